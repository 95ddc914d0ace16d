//! The node's seed: 64 raw bytes read from stdin (the agent writes them into a pipe;
//! they are never in argv, the environment or a plaintext file), and the node id
//! they give.
//!
//! The node id is derived exactly as ldk-node 0.7 does it, so it can be checked
//! before anything touches the storage directory, and so other tools can compute it
//! without linking ldk-node:
//!
//! 1. `a = BIP32 master key of the 64-byte seed` (HMAC-SHA512 with key
//!    "Bitcoin seed"); keep its 32-byte private key `k1`.
//! 2. `b = BIP32 master key of k1` (the 32 bytes as a seed); derive `m/0'`.
//! 3. The node id is the compressed secp256k1 public key of that private key.

use std::io::Read;

use ldk_node::bitcoin::secp256k1::{PublicKey, Secp256k1};

pub const SEED_LEN: usize = 64;

/// The seed, kept out of `Debug` output and wiped on drop.
pub struct Seed(pub [u8; SEED_LEN]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // Volatile so the wipe is not optimised away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("expected {SEED_LEN} seed bytes on stdin, got {0} before end of input")]
    Short(usize),
    #[error("reading the seed from stdin: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads exactly [`SEED_LEN`] bytes from `input`.
pub fn read_seed(mut input: impl Read) -> Result<Seed, SeedError> {
    let mut seed = Seed([0u8; SEED_LEN]);
    let mut filled = 0;
    while filled < SEED_LEN {
        match input.read(&mut seed.0[filled..])? {
            0 => return Err(SeedError::Short(filled)),
            n => filled += n,
        }
    }
    Ok(seed)
}

/// The Lightning node id `seed` gives under ldk-node 0.7, by the derivation shared
/// with lnswarmctl and the managers (`lnswarm_common::node_keys`); the test below
/// checks it against ldk-node itself.
pub fn node_id_from_seed(seed: &Seed) -> PublicKey {
    let key = lnswarm_common::node_keys::node_secret(&seed.0).expect("a Seed holds 64 bytes");
    PublicKey::from_secret_key(&Secp256k1::signing_only(), &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_refused() {
        assert!(matches!(
            read_seed(&[1u8; 10][..]),
            Err(SeedError::Short(10))
        ));
        assert!(read_seed(&[1u8; 70][..]).is_ok());
    }

    #[test]
    fn derivation_matches_ldk_node() {
        let seed = Seed([7u8; SEED_LEN]);
        let dir = std::env::temp_dir().join(format!("lnswarm-seed-test-{}", std::process::id()));
        let mut builder = ldk_node::Builder::new();
        builder.set_network(ldk_node::bitcoin::Network::Regtest);
        builder.set_storage_dir_path(dir.to_string_lossy().into_owned());
        builder.set_entropy_seed_bytes(seed.0);
        builder.set_chain_source_esplora("http://127.0.0.1:1".into(), None);
        let node = builder.build().expect("build");
        assert_eq!(node.node_id(), node_id_from_seed(&seed));
        let _ = std::fs::remove_dir_all(dir);
    }
}

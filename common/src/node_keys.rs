//! A hosted node's keys, derived from its 64-byte seed exactly as ldk-node derives
//! them, so an owner's device can know its node id, prove control of the node key,
//! and the managers can check a sealed seed, all without running ldk-node.
//!
//! ldk-node: `xprv = Xpriv::new_master(network, seed)`; LDK's `KeysManager` is seeded
//! with `xprv.private_key`; the node secret is `m/0'` of the master key made from that
//! seed. The network does not change private key bytes.

use bitcoin::{
    bip32::{ChildNumber, Xpriv},
    secp256k1::{PublicKey, Secp256k1, SecretKey},
    NetworkKind,
};

/// Length of a hosted node's seed (a BIP39 seed).
pub const SEED_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    #[error("a node seed is {SEED_LEN} bytes, got {0}")]
    SeedLength(usize),
    #[error("key derivation failed: {0}")]
    Derivation(String),
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    #[error("invalid node id")]
    NodeId,
}

/// The node's secret key.
pub fn node_secret(seed: &[u8]) -> Result<SecretKey, NodeKeyError> {
    if seed.len() != SEED_LEN {
        return Err(NodeKeyError::SeedLength(seed.len()));
    }
    let derr = |e: bitcoin::bip32::Error| NodeKeyError::Derivation(e.to_string());
    let wallet_master = Xpriv::new_master(NetworkKind::Test, seed).map_err(derr)?;
    let ldk_seed = wallet_master.private_key.secret_bytes();
    let ldk_master = Xpriv::new_master(NetworkKind::Test, &ldk_seed).map_err(derr)?;
    let secp = Secp256k1::signing_only();
    let node = ldk_master
        .derive_priv(
            &secp,
            &[ChildNumber::from_hardened_idx(0).expect("0 is a valid index")],
        )
        .map_err(derr)?;
    Ok(node.private_key)
}

/// The node id (compressed public key) in lowercase hex.
pub fn node_id(seed: &[u8]) -> Result<String, NodeKeyError> {
    let sk = node_secret(seed)?;
    Ok(PublicKey::from_secret_key(&Secp256k1::signing_only(), &sk).to_string())
}

/// A fresh 24-word BIP39 mnemonic and the 64-byte seed it gives (no passphrase), as
/// ldk-node's `set_entropy_bip39_mnemonic` would compute it.
pub fn new_mnemonic() -> (String, [u8; SEED_LEN]) {
    let mnemonic = bip39::Mnemonic::generate(24).expect("24 words is a valid length");
    let seed = mnemonic.to_seed("");
    (mnemonic.to_string(), seed)
}

/// The seed of an existing mnemonic.
pub fn seed_from_mnemonic(words: &str) -> Result<[u8; SEED_LEN], NodeKeyError> {
    let mnemonic =
        bip39::Mnemonic::parse(words.trim()).map_err(|e| NodeKeyError::Mnemonic(e.to_string()))?;
    Ok(mnemonic.to_seed(""))
}

/// Lightning's `signmessage` signature (zbase32) of `msg` by the node key.
pub fn sign_message(seed: &[u8], msg: &[u8]) -> Result<String, NodeKeyError> {
    Ok(lightning::util::message_signing::sign(
        msg,
        &node_secret(seed)?,
    ))
}

/// Whether `signature` is the node `node_id_hex`'s `signmessage` signature of `msg`.
pub fn verify_message(msg: &[u8], signature: &str, node_id_hex: &str) -> bool {
    match node_id_hex.parse::<PublicKey>() {
        Ok(pk) => lightning::util::message_signing::verify(msg, signature, &pk),
        Err(_) => false,
    }
}

/// A node id as sent on the wire (33-byte compressed public key) in hex, if it is a
/// valid public key.
pub fn node_id_from_bytes(raw: &[u8]) -> Result<String, NodeKeyError> {
    PublicKey::from_slice(raw)
        .map(|pk| pk.to_string())
        .map_err(|_| NodeKeyError::NodeId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_node_and_message() {
        let (_, seed_a) = new_mnemonic();
        let (_, seed_b) = new_mnemonic();
        let a = node_id(&seed_a).unwrap();
        let b = node_id(&seed_b).unwrap();
        assert!(crate::ids::is_node_id_hex(&a));
        let sig = sign_message(&seed_a, b"challenge").unwrap();
        assert!(verify_message(b"challenge", &sig, &a));
        assert!(!verify_message(b"challenge", &sig, &b));
        assert!(!verify_message(b"other", &sig, &a));
        assert!(node_id(&[0u8; 32]).is_err());
    }
}

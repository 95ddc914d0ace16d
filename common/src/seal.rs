//! Sealing a node's seed to the cluster: an anonymous sealed box (X25519, XSalsa20-
//! Poly1305) to a key pair only managers hold. The owner's device seals; only a
//! manager can open, and it does so only to check the seed at registration and to
//! hand it to the agent that runs the node.

use crypto_box::{PublicKey, SecretKey};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a cluster sealing key is 32 bytes")]
    KeyLength,
    #[error("sealed data could not be opened with this cluster's key")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// A new sealing key pair: (secret, public), 32 bytes each.
pub fn new_keypair() -> ([u8; 32], [u8; 32]) {
    let secret = SecretKey::generate(&mut crypto_box::aead::OsRng);
    let public = secret.public_key();
    (secret.to_bytes(), *public.as_bytes())
}

/// Seals `plaintext` to the cluster's public key.
pub fn seal(public_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let pk: [u8; 32] = public_key.try_into().map_err(|_| SealError::KeyLength)?;
    PublicKey::from(pk)
        .seal(&mut crypto_box::aead::OsRng, plaintext)
        .map_err(|_| SealError::Seal)
}

/// Opens data sealed to the cluster's key.
pub fn open(secret_key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let sk: [u8; 32] = secret_key.try_into().map_err(|_| SealError::KeyLength)?;
    SecretKey::from(sk)
        .unseal(sealed)
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cluster_key_opens() {
        let (sk, pk) = new_keypair();
        let (other_sk, _) = new_keypair();
        let sealed = seal(&pk, b"seed bytes").unwrap();
        assert_eq!(open(&sk, &sealed).unwrap(), b"seed bytes");
        assert!(open(&other_sk, &sealed).is_err());
        assert!(open(&sk, &sealed[..10]).is_err());
    }
}

#[cfg(test)]
#[path = "seal_fuzz.rs"]
mod fuzz;

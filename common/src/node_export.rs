//! The encrypted form of an exported node's state, after Greenlight's export
//! (`gl-client`'s `export.rs`): encrypted to the node's own key, so the managers
//! can make it from the node id alone and only the holder of the node's seed can
//! read it.
//!
//! Layout: `"LNSX"` ‖ version (1) ‖ ephemeral public key (33) ‖ nonce (12) ‖
//! tag (16) ‖ ciphertext. The key is the secp256k1 ECDH of the ephemeral key and
//! the node key, hashed as libsecp256k1 does (SHA-256 of the compressed shared
//! point); the cipher is ChaCha20-Poly1305 with the node id (33 bytes) as AAD.
//! Greenlight's layout is the same without the magic.

use bitcoin::secp256k1::{ecdh::SharedSecret, PublicKey, Secp256k1, SecretKey};
use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit};
use rand::RngCore;

const MAGIC: &[u8; 4] = b"LNSX";
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 33 + 12 + 16;

#[derive(Debug, thiserror::Error)]
pub enum ExportCryptError {
    #[error("not an lnswarm node export (bad magic or too short)")]
    NotAnExport,
    #[error("export format version {0} is not supported (this build reads version {VERSION})")]
    Version(u8),
    #[error("the export's ephemeral key is invalid")]
    EphemeralKey,
    #[error("the export does not decrypt with this node key: it belongs to another node (wrong mnemonic?) or is damaged")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("not a node id (hex compressed public key)")]
    NodeId,
}

fn cipher(shared: &SharedSecret) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&shared.secret_bytes().into())
}

/// `plaintext` encrypted to the node `node_id`.
pub fn encrypt(node_id: &PublicKey, plaintext: &[u8]) -> Result<Vec<u8>, ExportCryptError> {
    let mut rng = rand::rngs::OsRng;
    let ephemeral = loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(k) = SecretKey::from_slice(&bytes) {
            break k;
        }
    };
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let shared = SharedSecret::new(node_id, &ephemeral);
    let mut body = plaintext.to_vec();
    let tag = cipher(&shared)
        .encrypt_in_place_detached(&nonce.into(), &node_id.serialize(), &mut body)
        .map_err(|_| ExportCryptError::Encrypt)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&ephemeral.public_key(&Secp256k1::signing_only()).serialize());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&body);
    Ok(out)
}

/// [`encrypt`] to the node whose id is `node_id_hex`.
pub fn encrypt_to_node(node_id_hex: &str, plaintext: &[u8]) -> Result<Vec<u8>, ExportCryptError> {
    let pk = node_id_hex
        .parse::<PublicKey>()
        .map_err(|_| ExportCryptError::NodeId)?;
    encrypt(&pk, plaintext)
}

/// The plaintext of `blob`, with the node's secret key.
pub fn decrypt(node_secret: &SecretKey, blob: &[u8]) -> Result<Vec<u8>, ExportCryptError> {
    if blob.len() < HEADER_LEN || &blob[..4] != MAGIC {
        return Err(ExportCryptError::NotAnExport);
    }
    if blob[4] != VERSION {
        return Err(ExportCryptError::Version(blob[4]));
    }
    let ephemeral =
        PublicKey::from_slice(&blob[5..38]).map_err(|_| ExportCryptError::EphemeralKey)?;
    let nonce: [u8; 12] = blob[38..50].try_into().expect("12 bytes");
    let tag: [u8; 16] = blob[50..66].try_into().expect("16 bytes");
    let node_id = node_secret.public_key(&Secp256k1::signing_only());
    let shared = SharedSecret::new(&ephemeral, node_secret);
    let mut body = blob[HEADER_LEN..].to_vec();
    cipher(&shared)
        .decrypt_in_place_detached(&nonce.into(), &node_id.serialize(), &mut body, &tag.into())
        .map_err(|_| ExportCryptError::Decrypt)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> (SecretKey, PublicKey) {
        let sk = SecretKey::from_slice(&[b; 32]).unwrap();
        (sk, sk.public_key(&Secp256k1::signing_only()))
    }

    #[test]
    fn only_the_node_key_decrypts() {
        let (sk, pk) = key(1);
        let (other, _) = key(2);
        let blob = encrypt(&pk, b"channel state").unwrap();
        assert_eq!(decrypt(&sk, &blob).unwrap(), b"channel state");
        assert!(matches!(
            decrypt(&other, &blob),
            Err(ExportCryptError::Decrypt)
        ));
        // Two exports of the same state differ (fresh ephemeral key and nonce).
        assert_ne!(encrypt(&pk, b"channel state").unwrap(), blob);
    }

    #[test]
    fn the_aad_is_the_node_id() {
        // Encrypted under node 1's key material but bound to node 2's id as AAD:
        // node 1's key must refuse it.
        let (sk, pk) = key(1);
        let (_, other_pk) = key(2);
        let ephemeral = SecretKey::from_slice(&[3; 32]).unwrap();
        let shared = SharedSecret::new(&pk, &ephemeral);
        let mut body = b"state".to_vec();
        let nonce = [0u8; 12];
        let tag = cipher(&shared)
            .encrypt_in_place_detached(&nonce.into(), &other_pk.serialize(), &mut body)
            .unwrap();
        let mut blob = MAGIC.to_vec();
        blob.push(VERSION);
        blob.extend_from_slice(&ephemeral.public_key(&Secp256k1::signing_only()).serialize());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&tag);
        blob.extend_from_slice(&body);
        assert!(matches!(
            decrypt(&sk, &blob),
            Err(ExportCryptError::Decrypt)
        ));
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_refused() {
        let (sk, pk) = key(1);
        let blob = encrypt(&pk, b"0123456789").unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(decrypt(&sk, &bad).is_err(), "byte {i} flipped");
        }
        assert!(matches!(
            decrypt(&sk, &blob[..HEADER_LEN - 1]),
            Err(ExportCryptError::NotAnExport)
        ));
        let mut v2 = blob.clone();
        v2[4] = 2;
        assert!(matches!(
            decrypt(&sk, &v2),
            Err(ExportCryptError::Version(2))
        ));
    }
}

//! Secrets at rest: the root CA key, the cluster's sealing key, node seeds, webhook
//! secrets and node state are written to the store sealed with the cluster's data
//! key (XChaCha20-Poly1305, the store key as associated data, so a sealed value
//! cannot be moved to another key). The raft log, the state machine and snapshots
//! therefore never hold them in the clear.
//!
//! Every manager holds the same data key, in `D/keys/data-key.json` (0600): made by
//! `init`, handed to a joining manager in its Join answer (manager-only, over mTLS).
//! Without autolock the file holds the key itself, as SwarmKit keeps its data key
//! beside the TLS key, so only the file's mode protects it; with autolock it holds
//! the key wrapped by a key derived from the unlock key, which is never written to
//! disk, and a restarted manager serves nothing until it is given that key
//! (`lnswarm-manager unlock`).

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
    XChaCha20Poly1305, XNonce,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Sealed values start with this, so a reader can tell them from values an older
/// version wrote in the clear (read as they are until migrated).
const MAGIC: &[u8] = b"\x00LNS1";
const NONCE_LEN: usize = 24;
const UNLOCK_PREFIX: &str = "LNSKEY-1-";

#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    #[error("a sealed value could not be opened with this manager's data key")]
    Open,
    #[error("the data key file {path} is unreadable: {why}")]
    KeyFile { path: PathBuf, why: String },
    #[error("writing the data key file {path}: {source}")]
    WriteKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("wrong unlock key")]
    WrongUnlockKey,
    #[error("malformed unlock key: it looks like {UNLOCK_PREFIX}<64 hex digits>")]
    MalformedUnlockKey,
    #[error("this manager is locked: unlock it with `lnswarm-manager unlock`")]
    Locked,
}

/// The cluster's data key. Wiped from memory when dropped.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({})", self.id())
    }
}

impl DataKey {
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(&mut k[..]);
        DataKey(k)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let k: [u8; 32] = bytes.try_into().ok()?;
        Some(DataKey(Zeroizing::new(k)))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A public name for the key (a hash, not the key), recorded in the cluster
    /// object so managers can tell whether they hold the cluster's key.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"lnswarm data key id");
        h.update(&self.0[..]);
        hex::encode(&h.finalize()[..16])
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0[..]).into())
    }

    /// Seals `plaintext` for the store key `aad`.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail");
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value sealed for `aad`. A value without the sealed prefix is one an
    /// older version wrote in the clear, and is returned as it is.
    pub fn open(&self, aad: &str, stored: &[u8]) -> Result<Vec<u8>, AtRestError> {
        if !is_sealed(stored) {
            return Ok(stored.to_vec());
        }
        let rest = &stored[MAGIC.len()..];
        if rest.len() < NONCE_LEN {
            return Err(AtRestError::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| AtRestError::Open)
    }
}

/// Whether `stored` was written sealed.
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(MAGIC)
}

/// An autolock unlock key: shown to the operator once, never stored in the clear.
#[derive(Clone)]
pub struct UnlockKey(Zeroizing<[u8; 32]>);

impl UnlockKey {
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(&mut k[..]);
        UnlockKey(k)
    }

    pub fn parse(s: &str) -> Result<Self, AtRestError> {
        let hexpart = s
            .trim()
            .strip_prefix(UNLOCK_PREFIX)
            .ok_or(AtRestError::MalformedUnlockKey)?;
        let mut bytes =
            Zeroizing::new(hex::decode(hexpart).map_err(|_| AtRestError::MalformedUnlockKey)?);
        let k: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AtRestError::MalformedUnlockKey)?;
        bytes.zeroize();
        Ok(UnlockKey(Zeroizing::new(k)))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let k: [u8; 32] = bytes.try_into().ok()?;
        Some(UnlockKey(Zeroizing::new(k)))
    }

    /// The form the operator types.
    pub fn display(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{UNLOCK_PREFIX}{}", hex::encode(&self.0[..])))
    }

    fn wrapping_key(&self) -> DataKey {
        let mut h = Sha256::new();
        h.update(b"lnswarm unlock key v1");
        h.update(&self.0[..]);
        let k: [u8; 32] = h.finalize().into();
        DataKey(Zeroizing::new(k))
    }
}

const WRAP_AAD: &str = "lnswarm data key";

/// The data key file as written.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    key_id: String,
    /// The key itself (no autolock), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// The key wrapped by the unlock key (autolock), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
}

/// What a manager finds in its data key file.
pub enum StoredKey {
    Plain(DataKey),
    /// Autolocked: opens with the unlock key.
    Locked {
        key_id: String,
        wrapped: Vec<u8>,
    },
}

impl StoredKey {
    /// The data key, given the unlock key when the file is locked.
    pub fn unlock(&self, unlock: Option<&UnlockKey>) -> Result<DataKey, AtRestError> {
        match (self, unlock) {
            (StoredKey::Plain(k), _) => Ok(k.clone()),
            (StoredKey::Locked { .. }, None) => Err(AtRestError::Locked),
            (StoredKey::Locked { key_id, wrapped }, Some(u)) => {
                let bytes = Zeroizing::new(
                    u.wrapping_key()
                        .open(WRAP_AAD, wrapped)
                        .map_err(|_| AtRestError::WrongUnlockKey)?,
                );
                let key = DataKey::from_bytes(&bytes).ok_or(AtRestError::WrongUnlockKey)?;
                if &key.id() != key_id {
                    return Err(AtRestError::WrongUnlockKey);
                }
                Ok(key)
            }
        }
    }

    pub fn is_locked(&self) -> bool {
        matches!(self, StoredKey::Locked { .. })
    }
}

/// `D/keys/data-key.json`.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("data-key.json")
}

/// Reads the data key file; `None` if there is none (a store from before data keys).
pub fn read_key(path: &Path) -> Result<Option<StoredKey>, AtRestError> {
    let bad = |why: String| AtRestError::KeyFile {
        path: path.to_path_buf(),
        why,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    parse_key_file(&text).map(Some).map_err(bad)
}

/// The data key file's text, or why it is unreadable.
fn parse_key_file(text: &str) -> Result<StoredKey, String> {
    let file: KeyFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match (file.key, file.wrapped) {
        (Some(k), None) => {
            let bytes = Zeroizing::new(B64.decode(k).map_err(|e| e.to_string())?);
            let key = DataKey::from_bytes(&bytes).ok_or("key is not 32 bytes")?;
            if key.id() != file.key_id {
                return Err("key does not match its id".into());
            }
            Ok(StoredKey::Plain(key))
        }
        (None, Some(w)) => Ok(StoredKey::Locked {
            key_id: file.key_id,
            wrapped: B64.decode(w).map_err(|e| e.to_string())?,
        }),
        _ => Err("holds neither a key nor a wrapped key".into()),
    }
}

/// Writes the data key, wrapped by `unlock` when autolock is on; atomically, 0600.
pub fn write_key(
    path: &Path,
    key: &DataKey,
    unlock: Option<&UnlockKey>,
) -> Result<(), AtRestError> {
    let werr = |source| AtRestError::WriteKeyFile {
        path: path.to_path_buf(),
        source,
    };
    let file = match unlock {
        None => KeyFile {
            key_id: key.id(),
            key: Some(B64.encode(key.bytes())),
            wrapped: None,
        },
        Some(u) => KeyFile {
            key_id: key.id(),
            key: None,
            wrapped: Some(B64.encode(u.wrapping_key().seal(WRAP_AAD, key.bytes()))),
        },
    };
    let text = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("JSON serializes"));
    let dir = path.parent().expect("key file has a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(werr)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(&text).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(werr)?;
    Ok(())
}

#[cfg(test)]
#[path = "at_rest_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_key_and_for_their_key() {
        let k = DataKey::generate();
        let sealed = k.seal("some/key", b"seed");
        assert!(is_sealed(&sealed));
        assert_eq!(k.open("some/key", &sealed).unwrap(), b"seed");
        assert!(
            k.open("another/key", &sealed).is_err(),
            "moved to another key"
        );
        assert!(DataKey::generate().open("some/key", &sealed).is_err());
        // Values from before sealing read as they are.
        assert_eq!(k.open("some/key", b"plain").unwrap(), b"plain");
        assert!(k.open("x", &sealed[..10]).is_err());
    }

    #[test]
    fn key_file_round_trips_plain_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path());
        assert!(read_key(&path).unwrap().is_none());
        let k = DataKey::generate();
        write_key(&path, &k, None).unwrap();
        let stored = read_key(&path).unwrap().unwrap();
        assert_eq!(stored.unlock(None).unwrap().id(), k.id());

        let u = UnlockKey::generate();
        write_key(&path, &k, Some(&u)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&B64.encode(k.bytes())),
            "the key is not in the clear"
        );
        let stored = read_key(&path).unwrap().unwrap();
        assert!(matches!(stored.unlock(None), Err(AtRestError::Locked)));
        assert!(matches!(
            stored.unlock(Some(&UnlockKey::generate())),
            Err(AtRestError::WrongUnlockKey)
        ));
        let parsed = UnlockKey::parse(&u.display()).unwrap();
        assert_eq!(stored.unlock(Some(&parsed)).unwrap().id(), k.id());
        assert!(UnlockKey::parse("LNSKEY-1-zz").is_err());
    }
}

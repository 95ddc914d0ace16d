//! A certificate and its key on disk, replaced as a pair. Renewal writes a new key
//! and a new certificate; a crash between the two renames must not leave a key
//! that is not the certificate's. So both are written to temporary files first,
//! the key is renamed, then the certificate; a reader that finds a new key next
//! to an old certificate finishes the second rename itself. Every file is 0600.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use crate::tls::LiveIdentity;

/// Writes `bytes` to `path` through a temporary file in the same directory, so a
/// reader sees the old content or the new, never part of it. Mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = pending(path);
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// The temporary file that stands for `path` until it is renamed into place.
fn pending(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.new"))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Holds an exclusive `flock` on the directory's lock file: two writers of one
/// pair (a manager renewing its operator credential and `lnswarmctl` renewing the
/// same one) must not interleave their renames. The lock lives as long as the file.
struct PairLock {
    _file: fs::File,
}

impl PairLock {
    fn take(cert_path: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(cert_path.with_file_name(".pair.lock"))?;
        // SAFETY: flock on a descriptor this value owns; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(PairLock { _file: file })
    }
}

/// Replaces the pair at `cert_path` and `key_path`.
pub fn write_pair(
    cert_path: &Path,
    key_path: &Path,
    cert_pem: &str,
    key_pem: &str,
) -> std::io::Result<()> {
    let _lock = PairLock::take(cert_path)?;
    let (cert_tmp, key_tmp) = (pending(cert_path), pending(key_path));
    write_synced(&key_tmp, key_pem.as_bytes())?;
    write_synced(&cert_tmp, cert_pem.as_bytes())?;
    fs::rename(&key_tmp, key_path)?;
    fs::rename(&cert_tmp, cert_path)?;
    sync_dir(cert_path)
}

/// Reads the pair, first finishing a [`write_pair`] that a crash interrupted.
pub fn read_pair(cert_path: &Path, key_path: &Path) -> std::io::Result<(String, String)> {
    let key = fs::read_to_string(key_path)?;
    let cert = fs::read_to_string(cert_path)?;
    if matches(&cert, &key) {
        return Ok((cert, key));
    }
    // A writer may be between its renames: wait for it, then read again.
    let _lock = PairLock::take(cert_path)?;
    let key = fs::read_to_string(key_path)?;
    let cert = fs::read_to_string(cert_path)?;
    if matches(&cert, &key) {
        return Ok((cert, key));
    }
    let cert_tmp = pending(cert_path);
    if let Ok(new_cert) = fs::read_to_string(&cert_tmp) {
        if matches(&new_cert, &key) {
            fs::rename(&cert_tmp, cert_path)?;
            sync_dir(cert_path)?;
            return Ok((new_cert, key));
        }
    }
    // Not a pair and nothing to finish: let the TLS setup report the mismatch.
    Ok((cert, key))
}

fn matches(cert_pem: &str, key_pem: &str) -> bool {
    LiveIdentity::new(cert_pem, key_pem).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ClusterCa, LeafRequest, Role};
    use std::os::unix::fs::PermissionsExt;

    fn leaf(ca: &ClusterCa) -> (String, String) {
        let kc = crate::pki::new_key_and_csr("a", None).unwrap();
        let cert = ca
            .issue(&LeafRequest {
                csr_pem: &kc.csr_pem,
                role: Role::Worker,
                common_name: "a",
                ip_sans: &[],
                validity: None,
            })
            .unwrap();
        (cert.pem, kc.key_pem)
    }

    #[test]
    fn a_renewal_cut_between_the_renames_is_finished_by_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let ca = ClusterCa::create("c1").unwrap();
        let (old_cert, old_key) = leaf(&ca);
        let (new_cert, new_key) = leaf(&ca);
        write_pair(&cert, &key, &old_cert, &old_key).unwrap();
        assert_eq!(read_pair(&cert, &key).unwrap(), (old_cert.clone(), old_key));
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // What a crash after the key's rename leaves behind.
        write_synced(&pending(&cert), new_cert.as_bytes()).unwrap();
        fs::write(&key, &new_key).unwrap();
        assert_eq!(
            read_pair(&cert, &key).unwrap(),
            (new_cert.clone(), new_key.clone())
        );
        assert_eq!(fs::read_to_string(&cert).unwrap(), new_cert);
        assert!(!pending(&cert).exists());
    }
}

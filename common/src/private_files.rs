//! Files only their owner reads. Managers and agents keep keys, seeds' stand-ins
//! and node state under their data directories; whatever the umask the operator's
//! shell or systemd left them, what they create is 0600 (directories 0700), and a
//! data directory made by an older version is tightened at start.

use std::{os::unix::fs::PermissionsExt, path::Path};

/// Sets the process umask to 077, so every file this process and its children
/// create (sled's files, ldk-node's SQLite, logs) is private to its owner.
pub fn private_umask() {
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(0o077) };
}

/// Removes group and other permission bits from `root` and everything under it
/// (symlinks are not followed).
pub fn restrict_tree(root: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode & !0o077))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(root)? {
            restrict_tree(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightens_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = sub.join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict_tree(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&f), 0o600);
    }
}

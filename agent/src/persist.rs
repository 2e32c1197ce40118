//! Durable small files: the one way state files are written and set aside.
//!
//! A write goes to a temp file in the same directory, is fsynced, renamed over
//! the target, and the directory is fsynced: a reader, or a power cut at any
//! point, sees the old file or the new one, never a mix. A bad file is moved
//! aside (`<name>.corrupt-<unix time>`), never deleted.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temp file a write of `path` goes through (a dot file beside it).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    dir.join(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        // A full disk leaves a partial temp file: do not leave it behind.
        let _ = fs::remove_file(&tmp);
    })
}

/// Moves a bad file aside as `<path>.corrupt-<now_unix>` and returns the new path.
pub fn set_aside(path: &Path, now_unix: u64) -> std::io::Result<PathBuf> {
    let kept = PathBuf::from(format!("{}.corrupt-{now_unix}", path.display()));
    fs::rename(path, &kept)?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!temp_path(&p).exists());
        let kept = set_aside(&p, 42).unwrap();
        assert_eq!(kept, dir.path().join("state.json.corrupt-42"));
        assert!(!p.exists());
        assert_eq!(fs::read(kept).unwrap(), b"two");
    }
}

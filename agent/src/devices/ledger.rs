//! The name ledger on disk: `/var/lib/hark/names.json`, format-versioned, written
//! atomically (temp file, fsync, rename, fsync of the directory).
//!
//! A corrupt or future-version file is never silently discarded: it is moved
//! aside as `names.json.corrupt-<unix time>`, reported, and naming continues from
//! an empty ledger. A read-only or full state directory is reported too; names
//! keep working in memory.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::naming::Ledger;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    #[serde(flatten)]
    ledger: Ledger,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot read the name ledger {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the name ledger {path} is unreadable ({reason}); kept aside as {kept}, starting empty"
    )]
    Corrupt {
        path: PathBuf,
        reason: String,
        kept: PathBuf,
    },
    #[error(
        "the name ledger {path} is unreadable ({reason}) and could not be kept aside: {source}"
    )]
    CorruptNotKept {
        path: PathBuf,
        reason: String,
        source: std::io::Error,
    },
    #[error("cannot write the name ledger {path}: {source} (names stay in memory)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads the ledger. A missing file is an empty ledger. A corrupt one yields an
/// empty ledger and the problem, after moving the file aside.
pub fn load(path: &Path, now_unix: u64) -> (Ledger, Option<LedgerError>) {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Ledger::default(), None),
        Err(source) => {
            return (
                Ledger::default(),
                Some(LedgerError::Read {
                    path: path.to_path_buf(),
                    source,
                }),
            );
        }
    };
    let reason = match serde_json::from_slice::<OnDisk>(&bytes) {
        Ok(d) if d.version == FORMAT_VERSION => return (d.ledger, None),
        Ok(d) => format!(
            "format version {} is not {FORMAT_VERSION}; written by a newer harkd?",
            d.version
        ),
        Err(e) => e.to_string(),
    };
    let problem = match crate::persist::set_aside(path, now_unix) {
        Ok(kept) => LedgerError::Corrupt {
            path: path.to_path_buf(),
            reason,
            kept,
        },
        Err(source) => LedgerError::CorruptNotKept {
            path: path.to_path_buf(),
            reason,
            source,
        },
    };
    (Ledger::default(), Some(problem))
}

/// Reads the ledger without changing anything (for reports): a missing file is
/// empty, a bad one is empty with the reason.
pub fn peek(path: &Path) -> (Ledger, Option<String>) {
    match fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Ledger::default(), None),
        Err(e) => (Ledger::default(), Some(format!("{}: {e}", path.display()))),
        Ok(b) => match serde_json::from_slice::<OnDisk>(&b) {
            Ok(d) if d.version == FORMAT_VERSION => (d.ledger, None),
            Ok(d) => (
                Ledger::default(),
                Some(format!("{}: format version {}", path.display(), d.version)),
            ),
            Err(e) => (Ledger::default(), Some(format!("{}: {e}", path.display()))),
        },
    }
}

/// Writes the ledger atomically: a reader (or a power cut) sees the old file or
/// the new one, never a mix.
pub fn save(path: &Path, ledger: &Ledger) -> Result<(), LedgerError> {
    let err = |source| LedgerError::Write {
        path: path.to_path_buf(),
        source,
    };
    let doc = OnDisk {
        version: FORMAT_VERSION,
        ledger: ledger.clone(),
    };
    let mut text = serde_json::to_vec_pretty(&doc).map_err(|e| err(std::io::Error::other(e)))?;
    text.push(b'\n');
    crate::persist::write_atomic(path, &text).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::naming::LedgerEntry;

    fn sample() -> Ledger {
        Ledger {
            entries: vec![LedgerEntry {
                name: "garden".into(),
                vendor_id: 0x0d8c,
                product_id: 0x0014,
                serial: Some("a \"quoted\" / serial ü".into()),
                port_path: "1-1.4".into(),
                product: Some("USB Audio Device".into()),
                first_seen: 1,
                last_seen: 2,
            }],
        }
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("names.json");
        let (l, problem) = load(&p, 0);
        assert!(l.entries.is_empty() && problem.is_none());
        save(&p, &sample()).unwrap();
        let (l, problem) = load(&p, 0);
        assert!(problem.is_none());
        assert_eq!(l, sample());
        // No temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_truncated_and_future_files_are_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("names.json");
        save(&p, &sample()).unwrap();
        let good = fs::read(&p).unwrap();
        let future = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"version\": 1", "\"version\": 9");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"\x00\xffnot json".to_vec()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("empty", vec![]),
            ("future", future.into_bytes()),
        ];
        for (i, (what, bytes)) in cases.into_iter().enumerate() {
            fs::write(&p, &bytes).unwrap();
            let now = 1000 + i as u64;
            let (l, problem) = load(&p, now);
            assert!(l.entries.is_empty(), "{what}");
            let msg = problem.unwrap().to_string();
            assert!(msg.contains("kept aside"), "{what}: {msg}");
            let kept = dir.path().join(format!("names.json.corrupt-{now}"));
            assert_eq!(
                fs::read(&kept).unwrap(),
                bytes,
                "{what}: the original is kept"
            );
            assert!(!p.exists());
        }
    }

    #[test]
    fn an_unwritable_directory_is_reported() {
        let p = Path::new("/proc/hark-cannot-write-here/names.json");
        let e = save(p, &sample()).unwrap_err();
        assert!(e.to_string().contains("names stay in memory"), "{e}");
    }
}

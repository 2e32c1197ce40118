//! The name ledger on disk: `/var/lib/hark/names.json`, a `persist::Store`
//! (format-versioned, written atomically: temp file, fsync, rename, fsync of the
//! directory).
//!
//! Recovery policy: names must keep working, so a bad file never stops naming;
//! it is reported, and naming continues from an empty ledger (new devices get
//! new names). Nothing is silently discarded:
//! - a corrupt file (not JSON, truncated, no version, ...) is moved aside as
//!   `names.json.corrupt-<unix time>`; the next save starts a new file;
//! - a file of a newer format version (a downgraded harkd) is left in place and
//!   never overwritten: names then live in memory only, each save reports it;
//! - an unreadable file, a read-only or full state directory: reported; names
//!   keep working in memory.
//!
//! A missing file is a first start: an empty ledger, no problem.

use std::path::{Path, PathBuf};

use super::naming::Ledger;
use crate::persist::{Aside, Document, Loaded, SaveError, Store};

pub const FORMAT_VERSION: u32 = 1;

impl Document for Ledger {
    const VERSION: u32 = FORMAT_VERSION;

    /// Names become URLs and D-Bus paths: an entry whose name harkd would never
    /// give (an edited or damaged file: `../x`, empty, upper case) makes the file
    /// corrupt, kept aside, rather than a stream name.
    fn check(&self) -> Result<(), String> {
        for (i, e) in self.entries.iter().enumerate() {
            crate::config::validate_stream_name(&e.name)
                .map_err(|why| format!("entry {}: {why}", i + 1))?;
        }
        Ok(())
    }
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
    #[error(
        "the name ledger {path} has format version {found}, newer than this harkd's \
         {supported}; left as it is and not overwritten: starting empty, names stay in memory"
    )]
    Newer {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    #[error("cannot write the name ledger {path}: {source} (names stay in memory)")]
    Write { path: PathBuf, source: SaveError },
}

/// Loads the ledger. A missing file is an empty ledger; a bad one is an empty
/// ledger and the problem (see the module doc for what happens to the file).
pub fn load(path: &Path, now_unix: u64) -> (Ledger, Option<LedgerError>) {
    let path_buf = path.to_path_buf();
    let problem = match Store::<Ledger>::new(path).load(now_unix) {
        Loaded::Ok(l) => return (l, None),
        Loaded::Missing => return (Ledger::default(), None),
        Loaded::Io(source) => LedgerError::Read {
            path: path_buf,
            source,
        },
        Loaded::Corrupt {
            reason,
            aside: Aside::Kept(kept),
        } => LedgerError::Corrupt {
            path: path_buf,
            reason,
            kept,
        },
        Loaded::Corrupt { reason, aside } => LedgerError::CorruptNotKept {
            path: path_buf,
            reason,
            source: match aside {
                Aside::NotKept(e) => e,
                // `load` always tries to move it; kept for completeness.
                _ => std::io::Error::other("left in place"),
            },
        },
        Loaded::UnsupportedVersion { found, supported } => LedgerError::Newer {
            path: path_buf,
            found,
            supported,
        },
    };
    (Ledger::default(), Some(problem))
}

/// Reads the ledger without changing anything (for reports): a missing file is
/// empty, a bad one is empty with the reason.
pub fn peek(path: &Path) -> (Ledger, Option<String>) {
    match Store::<Ledger>::new(path).peek() {
        Loaded::Ok(l) => (l, None),
        other => (
            Ledger::default(),
            other.problem().map(|p| format!("{}: {p}", path.display())),
        ),
    }
}

/// Writes the ledger atomically: a reader (or a power cut) sees the old file or
/// the new one, never a mix. A newer harkd's file is not overwritten.
pub fn save(path: &Path, ledger: &Ledger) -> Result<(), LedgerError> {
    Store::<Ledger>::new(path)
        .save(ledger)
        .map_err(|source| LedgerError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::fs;

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

    /// `names.json` exactly as harkd has written it since the ledger began.
    const WRITTEN_BY_0_1: &str = r#"{
  "version": 1,
  "entries": [
    {
      "name": "garden",
      "vendor_id": 3468,
      "product_id": 20,
      "serial": "a \"quoted\" / serial ü",
      "port_path": "1-1.4",
      "product": "USB Audio Device",
      "first_seen": 1,
      "last_seen": 2
    }
  ]
}
"#;

    #[test]
    fn a_file_written_by_earlier_harkd_loads_and_is_written_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("names.json");
        fs::write(&p, WRITTEN_BY_0_1).unwrap();
        let (l, problem) = load(&p, 0);
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(l, sample());
        save(&p, &l).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), WRITTEN_BY_0_1);
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_naming_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("names.json");
        save(&p, &sample()).unwrap();
        let good = fs::read(&p).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"\x00\xffnot json".to_vec()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("empty", vec![]),
            ("no version", b"{\"entries\": []}".to_vec()),
            // A name harkd would never give: it must not become a URL.
            (
                "a name out of a path",
                WRITTEN_BY_0_1
                    .replace("\"garden\"", "\"../garden\"")
                    .into_bytes(),
            ),
        ];
        for (i, (what, bytes)) in cases.into_iter().enumerate() {
            fs::write(&p, &bytes).unwrap();
            let now = 1000 + i as u64;
            let (l, problem) = load(&p, now);
            assert!(l.entries.is_empty(), "{what}");
            let problem = problem.unwrap_or_else(|| panic!("{what}: not reported"));
            assert!(
                matches!(problem, LedgerError::Corrupt { .. }),
                "{what}: {problem}"
            );
            assert!(
                problem.to_string().contains("kept aside"),
                "{what}: {problem}"
            );
            let kept = dir.path().join(format!("names.json.corrupt-{now}"));
            assert_eq!(
                fs::read(&kept).unwrap(),
                bytes,
                "{what}: the original is kept"
            );
            assert!(!p.exists());
            // Naming goes on: the next save starts a new file.
            save(&p, &sample()).unwrap();
            assert_eq!(load(&p, now).0, sample(), "{what}");
        }
    }

    #[test]
    fn a_newer_file_is_reported_left_in_place_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("names.json");
        let future = WRITTEN_BY_0_1.replace("\"version\": 1", "\"version\": 2");
        fs::write(&p, &future).unwrap();
        let (l, problem) = load(&p, 7);
        assert!(l.entries.is_empty());
        let problem = problem.unwrap();
        assert!(
            matches!(problem, LedgerError::Newer { found: 2, .. }),
            "{problem}"
        );
        assert!(problem.to_string().contains("not overwritten"), "{problem}");
        let (_, peeked) = peek(&p);
        assert!(peeked.unwrap().contains("format version 2"));
        // Names stay in memory: every save says so, and the file stays.
        let e = save(&p, &sample()).unwrap_err();
        assert!(e.to_string().contains("names stay in memory"), "{e}");
        assert!(e.to_string().contains("not overwritten"), "{e}");
        assert_eq!(fs::read_to_string(&p).unwrap(), future);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_unwritable_directory_is_reported() {
        let p = Path::new("/proc/hark-cannot-write-here/names.json");
        let e = save(p, &sample()).unwrap_err();
        assert!(e.to_string().contains("names stay in memory"), "{e}");
    }
}

//! The reboot ledger on disk: `<state dir>/reboots.json`, a `persist::Store`
//! (format-versioned, written atomically: temp file, fsync, rename, fsync of the
//! directory).
//!
//! Recovery policy, fail safe: losing the file that limits reboots must never be
//! what lets a board reboot-loop, so any file this harkd cannot use loads as a
//! *locked* ledger, which allows no reboot until a boot is marked good:
//! - missing (a first boot, or the file was lost): locked, not a problem;
//! - corrupt (not JSON, truncated, no version, ...): locked, reported, and the
//!   file kept aside as `reboots.json.corrupt-<unix time>`;
//! - a newer format version (a downgraded harkd): locked, reported, and left in
//!   place, never overwritten, so this harkd cannot even mark a good boot: no
//!   reboot until a newer harkd runs again or an operator moves the file away;
//! - unreadable (permissions, I/O error): locked and reported.

use std::path::{Path, PathBuf};

use super::ledger::Ledger;
use crate::persist::{Aside, Document, Loaded, SaveError, Store};

pub const FILE_NAME: &str = "reboots.json";
pub const FORMAT_VERSION: u32 = 1;

impl Document for Ledger {
    const VERSION: u32 = FORMAT_VERSION;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the reboot ledger {path}: {source}; reboots locked until a good boot")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the reboot ledger {path} is unreadable ({reason}); kept aside as {kept}; \
         reboots locked until a good boot"
    )]
    Corrupt {
        path: PathBuf,
        reason: String,
        kept: PathBuf,
    },
    #[error(
        "the reboot ledger {path} is unreadable ({reason}) and could not be kept aside \
         ({source}); reboots locked until a good boot"
    )]
    CorruptNotKept {
        path: PathBuf,
        reason: String,
        source: std::io::Error,
    },
    #[error(
        "the reboot ledger {path} has format version {found}, newer than this harkd's \
         {supported}; left as it is and not overwritten; no reboot until a newer harkd \
         runs or the file is moved away"
    )]
    Newer {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    #[error("cannot write the reboot ledger {path}: {source}")]
    Write { path: PathBuf, source: SaveError },
}

fn store(path: &Path) -> Store<Ledger> {
    Store::new(path)
}

/// Loads the ledger; see the module doc for what happens to a bad or missing file.
pub fn load(path: &Path, now_unix: u64) -> (Ledger, Option<StoreError>) {
    let path_buf = path.to_path_buf();
    let problem = match store(path).load(now_unix) {
        Loaded::Ok(l) => return (l, None),
        Loaded::Missing => return (missing(path), None),
        Loaded::Io(source) => StoreError::Read {
            path: path_buf,
            source,
        },
        Loaded::Corrupt {
            reason,
            aside: Aside::Kept(kept),
        } => StoreError::Corrupt {
            path: path_buf,
            reason,
            kept,
        },
        Loaded::Corrupt { reason, aside } => StoreError::CorruptNotKept {
            path: path_buf,
            reason,
            source: match aside {
                Aside::NotKept(e) => e,
                _ => std::io::Error::other("left in place"),
            },
        },
        Loaded::UnsupportedVersion { found, supported } => StoreError::Newer {
            path: path_buf,
            found,
            supported,
        },
    };
    (Ledger::locked(problem.to_string()), Some(problem))
}

fn missing(path: &Path) -> Ledger {
    Ledger::locked(format!(
        "no reboot ledger at {} (a first boot, or the file was lost)",
        path.display()
    ))
}

/// Reads the ledger without changing anything (for reports): what `load`
/// would return, but a bad file stays where it is.
pub fn peek(path: &Path) -> (Ledger, Option<String>) {
    match store(path).peek() {
        Loaded::Ok(l) => (l, None),
        Loaded::Missing => (missing(path), None),
        other => {
            let p = format!(
                "{}: {}",
                path.display(),
                other.problem().unwrap_or_default()
            );
            (Ledger::locked(p.clone()), Some(p))
        }
    }
}

/// The bytes `save` writes.
pub fn render(ledger: &Ledger) -> Vec<u8> {
    // Serialising plain strings and integers into memory cannot fail.
    Store::render(ledger).unwrap_or_default()
}

/// Writes the ledger atomically and durably (refused over a newer harkd's file).
pub fn save(path: &Path, ledger: &Ledger) -> Result<(), StoreError> {
    store(path)
        .save(ledger)
        .map_err(|source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// `save` for callers that carry on when the disk fails (the ledger then only
/// lives in memory): the failure is logged, and returned for status reports.
pub fn save_or_log(path: &Path, ledger: &Ledger) -> Result<(), String> {
    save(path, ledger).map_err(|e| {
        tracing::error!(error = %e, "reboot ledger");
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::super::ledger::{Decision, Now, Policy, Refusal};
    use super::*;

    const P: Policy = Policy {
        max_reboots: 3,
        window_s: 86_400,
        min_spacing_s: 1800,
    };

    fn now(boot: &str, up: u64) -> Now {
        Now {
            boot_id: boot.into(),
            uptime_s: up,
            wall_unix: 1_700_000_000,
        }
    }

    fn sample() -> Ledger {
        let mut l = Ledger::default();
        l.observe(&now("a", 4000), &P);
        l.record_reboot(&now("a", 4000), "no healthy stream for 15m");
        l.observe(&now("b", 100), &P);
        l.mark_good(&now("b", 100));
        l
    }

    #[test]
    fn round_trip_and_a_missing_file_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let (l, problem) = load(&p, 1);
        assert!(problem.is_none());
        assert!(l.locked.as_deref().unwrap().contains("no reboot ledger"));
        save(&p, &sample()).unwrap();
        let (back, problem) = load(&p, 1);
        assert!(problem.is_none());
        assert_eq!(back, sample());
    }

    #[test]
    fn corrupt_truncated_and_unversioned_files_are_kept_aside_and_lock() {
        let full = render(&sample());
        // Without a version it would parse as an empty, unlocked ledger: it must not.
        let unversioned = b"{\"current\": null, \"reboots\": []}".to_vec();
        for (what, bytes) in [
            ("garbage", b"\x00\xffnot json".to_vec()),
            ("empty", vec![]),
            ("truncated", full[..full.len() / 2].to_vec()),
            ("no version", unversioned),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join(FILE_NAME);
            std::fs::write(&p, &bytes).unwrap();
            let (mut l, problem) = load(&p, 77);
            let problem = problem.unwrap_or_else(|| panic!("{what}: no problem reported"));
            assert!(
                matches!(problem, StoreError::Corrupt { .. }),
                "{what}: {problem}"
            );
            let kept = dir.path().join("reboots.json.corrupt-77");
            assert_eq!(std::fs::read(&kept).unwrap(), bytes, "{what}");
            assert!(!p.exists(), "{what}");
            l.observe(&now("c", 10_000), &P);
            assert!(
                matches!(l.decide(&P), Decision::Refuse(Refusal::Locked { .. })),
                "{what}"
            );
            // A good boot unlocks, and the next save starts a new file.
            l.mark_good(&now("c", 10_000));
            save(&p, &l).unwrap();
            assert_eq!(load(&p, 78).0.decide(&P), Decision::Allow, "{what}");
        }
    }

    #[test]
    fn a_newer_file_locks_is_left_in_place_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let future = String::from_utf8(render(&sample())).unwrap().replacen(
            "\"version\": 1",
            "\"version\": 2",
            1,
        );
        std::fs::write(&p, &future).unwrap();
        let (mut l, problem) = load(&p, 77);
        let problem = problem.unwrap();
        assert!(
            matches!(problem, StoreError::Newer { found: 2, .. }),
            "{problem}"
        );
        l.observe(&now("c", 10_000), &P);
        assert!(matches!(
            l.decide(&P),
            Decision::Refuse(Refusal::Locked { .. })
        ));
        // Not even a good boot may replace it: the file stays as it was.
        l.mark_good(&now("c", 10_000));
        let e = save(&p, &l).unwrap_err();
        assert!(e.to_string().contains("not overwritten"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), future);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let (l, problem) = peek(&p);
        assert!(l.locked.is_some() && problem.unwrap().contains("format version 2"));
    }

    /// `reboots.json` exactly as harkd has written it since the deadman began.
    const WRITTEN_BY_0_1: &str = r#"{
  "version": 1,
  "current": {
    "boot_id": "b",
    "uptime_s": 100
  },
  "reboots": [
    {
      "boot_id": "a",
      "at_uptime_s": 4000,
      "credited_s": 0,
      "reason": "no healthy stream for 15m",
      "wall_unix": 1700000000
    }
  ],
  "last_good": {
    "boot_id": "b",
    "uptime_s": 100,
    "wall_unix": 1700000000
  },
  "locked": null,
  "last_refusal": null
}
"#;

    #[test]
    fn a_file_written_by_earlier_harkd_loads_and_is_written_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        std::fs::write(&p, WRITTEN_BY_0_1).unwrap();
        let (l, problem) = load(&p, 1);
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(l, sample());
        save(&p, &l).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), WRITTEN_BY_0_1);
    }

    #[test]
    fn power_loss_at_every_byte_of_a_write_keeps_the_old_ledger() {
        // A power cut while the temp file is being written leaves the target
        // untouched: whatever the temp file holds, the old ledger loads.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let old = sample();
        save(&p, &old).unwrap();
        let mut new = old.clone();
        new.observe(&now("b", 2000), &P);
        new.record_reboot(&now("b", 2000), "again");
        let bytes = render(&new);
        for cut in 0..=bytes.len() {
            std::fs::write(crate::persist::temp_path(&p), &bytes[..cut]).unwrap();
            let (l, problem) = load(&p, 1);
            assert!(problem.is_none(), "cut at {cut}");
            assert_eq!(l, old, "cut at {cut}");
        }
        // The next save replaces the stale temp file and lands.
        save(&p, &new).unwrap();
        assert_eq!(load(&p, 1).0, new);
        // A file system that lost the data but kept the rename (no ordering)
        // shows up as a truncated target: every cut of it loads locked (all
        // but the last byte, the newline, which JSON does not need).
        for cut in 0..bytes.len() - 1 {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let (l, problem) = load(&p, cut as u64);
            assert!(problem.is_some(), "cut at {cut}");
            assert!(l.locked.is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join(FILE_NAME);
        let e = save(&p, &sample()).unwrap_err();
        assert!(e.to_string().contains("missing-dir/reboots.json"), "{e}");
    }
}

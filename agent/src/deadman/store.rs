//! The reboot ledger on disk: `<state dir>/reboots.json`, format-versioned,
//! written through `persist` (temp file, fsync, rename, fsync of the directory).
//!
//! Fail safe: a missing, unreadable, corrupt or future-version file loads as a
//! *locked* ledger, which allows no reboot until a boot is marked good. Losing
//! the file that limits reboots must never be what lets a board reboot-loop. A
//! bad file is kept aside as `reboots.json.corrupt-<unix time>` and reported.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ledger::Ledger;

pub const FILE_NAME: &str = "reboots.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    #[serde(flatten)]
    ledger: Ledger,
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
    #[error("cannot write the reboot ledger {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads the ledger; see the module doc for what happens to a bad or missing file.
pub fn load(path: &Path, now_unix: u64) -> (Ledger, Option<StoreError>) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                Ledger::locked(format!(
                    "no reboot ledger at {} (a first boot, or the file was lost)",
                    path.display()
                )),
                None,
            );
        }
        Err(source) => {
            let problem = StoreError::Read {
                path: path.to_path_buf(),
                source,
            };
            return (Ledger::locked(problem.to_string()), Some(problem));
        }
    };
    let reason = match parse(&bytes) {
        Ok(l) => return (l, None),
        Err(reason) => reason,
    };
    let problem = match crate::persist::set_aside(path, now_unix) {
        Ok(kept) => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
            kept,
        },
        Err(source) => StoreError::CorruptNotKept {
            path: path.to_path_buf(),
            reason,
            source,
        },
    };
    (Ledger::locked(problem.to_string()), Some(problem))
}

/// Reads the ledger without changing anything (for reports): what `load`
/// would return, but a bad file stays where it is.
pub fn peek(path: &Path) -> (Ledger, Option<String>) {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            Ledger::locked("no reboot ledger yet (a first boot, or the file was lost)"),
            None,
        ),
        Err(e) => {
            let p = format!("{}: {e}", path.display());
            (Ledger::locked(p.clone()), Some(p))
        }
        Ok(b) => match parse(&b) {
            Ok(l) => (l, None),
            Err(reason) => {
                let p = format!("{}: {reason}", path.display());
                (Ledger::locked(p.clone()), Some(p))
            }
        },
    }
}

fn parse(bytes: &[u8]) -> Result<Ledger, String> {
    match serde_json::from_slice::<OnDisk>(bytes) {
        Ok(d) if d.version == FORMAT_VERSION => Ok(d.ledger),
        Ok(d) => Err(format!(
            "format version {} is not {FORMAT_VERSION}; written by a newer harkd?",
            d.version
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The bytes `save` writes.
pub fn render(ledger: &Ledger) -> Vec<u8> {
    let doc = OnDisk {
        version: FORMAT_VERSION,
        ledger: ledger.clone(),
    };
    // Serialising plain strings and integers into memory cannot fail.
    let mut text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    text.push(b'\n');
    text
}

/// Writes the ledger atomically and durably.
pub fn save(path: &Path, ledger: &Ledger) -> Result<(), StoreError> {
    crate::persist::write_atomic(path, &render(ledger)).map_err(|source| StoreError::Write {
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
    fn corrupt_truncated_and_future_files_are_kept_aside_and_lock() {
        let full = render(&sample());
        let future = String::from_utf8(full.clone()).unwrap().replacen(
            "\"version\": 1",
            "\"version\": 2",
            1,
        );
        for (what, bytes) in [
            ("garbage", b"\x00\xffnot json".to_vec()),
            ("empty", vec![]),
            ("truncated", full[..full.len() / 2].to_vec()),
            ("future", future.into_bytes()),
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
        }
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

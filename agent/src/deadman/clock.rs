//! Reads the clock the ledger trusts: the kernel's boot ID and uptime, under a
//! procfs root prefix so tests can play whole boot sequences from fixture files.

use std::path::{Path, PathBuf};

use super::ledger::Now;

#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {reason}")]
pub struct ClockError {
    pub path: PathBuf,
    pub reason: String,
}

/// The boot ID, the uptime in whole seconds, and the wall clock.
pub fn now(procfs: &Path) -> Result<Now, ClockError> {
    let read = |rel: &str| {
        let path = procfs.join(rel);
        std::fs::read_to_string(&path).map_err(|e| ClockError {
            path: path.clone(),
            reason: e.to_string(),
        })
    };
    let boot_path = procfs.join("sys/kernel/random/boot_id");
    let boot_id = read("sys/kernel/random/boot_id")?.trim().to_string();
    if boot_id.is_empty()
        || boot_id.len() > 64
        || !boot_id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    {
        return Err(ClockError {
            path: boot_path,
            reason: format!("not a boot ID: {boot_id:?}"),
        });
    }
    let uptime_path = procfs.join("uptime");
    let text = read("uptime")?;
    let uptime: f64 = text
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .filter(|f: &f64| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| ClockError {
            path: uptime_path,
            reason: format!("not an uptime: {:?}", text.trim()),
        })?;
    let wall_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Now {
        boot_id,
        // Whole seconds: the ledger counts in seconds, rounding down is safe.
        uptime_s: uptime as u64,
        wall_unix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_real_clock() {
        let now = now(Path::new("/proc")).unwrap();
        assert_eq!(now.boot_id.len(), 36, "{now:?}");
        assert!(now.uptime_s > 0);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = now(dir.path()).unwrap_err();
        assert!(e.path.ends_with("sys/kernel/random/boot_id"), "{e}");
        std::fs::create_dir_all(dir.path().join("sys/kernel/random")).unwrap();
        std::fs::write(dir.path().join("sys/kernel/random/boot_id"), "../../etc\n").unwrap();
        assert!(
            now(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not a boot ID")
        );
        std::fs::write(
            dir.path().join("sys/kernel/random/boot_id"),
            "0f4c1a4e-5c4b-4b8e-9d4c-0a5e4b6c7d8e\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("uptime"), "nan 1\n").unwrap();
        assert!(
            now(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not an uptime")
        );
        std::fs::write(dir.path().join("uptime"), "12345.67 999.0\n").unwrap();
        assert_eq!(now(dir.path()).unwrap().uptime_s, 12345);
    }
}

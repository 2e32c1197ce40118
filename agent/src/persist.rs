//! The one store for harkd's state files: a small JSON document with a format
//! version, written atomically, read with explicit outcomes. Both ledgers use it
//! (`devices/ledger.rs`: `names.json`; `deadman/store.rs`: `reboots.json`); what
//! to do with a bad file is each ledger's own policy, in its own module, on
//! purpose different (a bad names file starts empty; a bad reboot ledger allows
//! no reboot).
//!
//! On disk: one JSON object, pretty-printed, ending in a newline, whose first
//! field is `"version": N` and whose other fields are the document's own
//! (`{"version": 1, "entries": [...]}`). Every file harkd has ever written has
//! this shape at version 1; a file without a `version` field was never written by
//! harkd and is read as corrupt, not guessed at (an unversioned `{"reboots": []}`
//! must not pass for an empty, unlocked reboot ledger). A document type moving to
//! version 2 reads older files through `Document::upgrade`.
//!
//! Writing: the bytes go to a temp file in the same directory (`.<name>.tmp`),
//! which is fsynced, renamed over the target, and the directory is fsynced: a
//! reader, or a power cut at any point, sees the old file or the new one, never
//! a mix. A failed write (a full disk, a read-only directory) removes its temp
//! file and leaves the old file as it was. A file of a newer format version (a
//! newer harkd wrote it, then the board was downgraded) is never overwritten:
//! `save` refuses, so upgrading again finds it intact.
//!
//! Reading (`load`): `Missing`, `Ok`, `Corrupt` (not JSON, truncated, no
//! version, fields that do not fit; the file is moved aside as
//! `<name>.corrupt-<unix time>`, never deleted), `UnsupportedVersion` (newer;
//! left in place) or `Io` (it exists but cannot be read). `peek` is the same
//! read for reports and moves nothing.
//!
//! Test hook: `set_test_delay` makes every write sleep that long first, on the
//! calling thread, to stand in for a state directory on a slow SD card. `harkd
//! run --test-hooks` sets it from `HARK_TEST_SLOW_STORE_MS` (milliseconds; see
//! `test_delay_from_env`); without `--test-hooks` the variable is not read.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A document kept in a `Store`: its fields are written beside `version`.
pub trait Document: Serialize + DeserializeOwned {
    /// The format version this harkd writes, and the newest it reads.
    const VERSION: u32;

    /// Reads a document of an older format version (`doc` is the whole JSON
    /// object, `version` included). No older versions exist yet: an older (or
    /// zero) version is a corrupt file.
    fn upgrade(version: u64, doc: serde_json::Value) -> Result<Self, String> {
        let _ = doc;
        Err(format!(
            "format version {version} is not one this harkd reads (it reads {})",
            Self::VERSION
        ))
    }

    /// What the fields' types cannot say (a name harkd would never write): a
    /// document that fails is a corrupt file. Every document passes by default.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// What happened to a corrupt file.
#[derive(Debug)]
pub enum Aside {
    /// Moved here (`<name>.corrupt-<unix time>`).
    Kept(PathBuf),
    /// Could not be moved (it stays where it was).
    NotKept(std::io::Error),
    /// Left alone on purpose (`peek`).
    Untouched,
}

/// The outcome of reading a store.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No file: a first start, or the file was lost.
    Missing,
    Ok(T),
    /// Not a document of this type: not JSON, truncated, empty, no version,
    /// fields that do not fit.
    Corrupt {
        reason: String,
        aside: Aside,
    },
    /// Written by a newer harkd. Left in place; `save` will not overwrite it.
    UnsupportedVersion {
        found: u64,
        supported: u32,
    },
    /// It is there but cannot be read (permissions, I/O error).
    Io(std::io::Error),
}

impl<T> Loaded<T> {
    /// Why the file could not be used (`None` for `Ok` and `Missing`).
    pub fn problem(&self) -> Option<String> {
        match self {
            Loaded::Missing | Loaded::Ok(_) => None,
            Loaded::Corrupt { reason, aside } => Some(match aside {
                Aside::Kept(kept) => format!("{reason}; kept aside as {}", kept.display()),
                Aside::NotKept(e) => format!("{reason}; could not be kept aside: {e}"),
                Aside::Untouched => reason.clone(),
            }),
            Loaded::UnsupportedVersion { found, supported } => Some(newer(*found, *supported)),
            Loaded::Io(e) => Some(e.to_string()),
        }
    }
}

fn newer(found: u64, supported: u32) -> String {
    format!(
        "format version {found}, newer than this harkd's {supported} (written by a newer \
         harkd?); left as it is, not overwritten"
    )
}

/// Why a save did not happen. The old file, if any, is as it was.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{}", newer(*.found, *.supported))]
    Newer { found: u64, supported: u32 },
}

/// One versioned document at one path.
#[derive(Debug, Clone)]
pub struct Store<T> {
    path: PathBuf,
    doc: PhantomData<fn() -> T>,
}

#[derive(Serialize)]
struct Out<'a, T> {
    version: u32,
    #[serde(flatten)]
    doc: &'a T,
}

#[derive(Deserialize)]
struct In<T> {
    #[serde(rename = "version")]
    _version: serde::de::IgnoredAny,
    #[serde(flatten)]
    doc: T,
}

impl<T: Document> Store<T> {
    pub fn new(path: impl Into<PathBuf>) -> Store<T> {
        Store {
            path: path.into(),
            doc: PhantomData,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the document; a corrupt file is moved aside (`now_unix` names it).
    pub fn load(&self, now_unix: u64) -> Loaded<T> {
        match self.read() {
            Loaded::Corrupt { reason, .. } => Loaded::Corrupt {
                reason,
                aside: match set_aside(&self.path, now_unix) {
                    Ok(kept) => Aside::Kept(kept),
                    Err(e) => Aside::NotKept(e),
                },
            },
            other => other,
        }
    }

    /// Reads the document and changes nothing (a corrupt file stays).
    pub fn peek(&self) -> Loaded<T> {
        self.read()
    }

    fn read(&self) -> Loaded<T> {
        match fs::read(&self.path) {
            Ok(bytes) => Self::decode(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Loaded::Missing,
            Err(e) => Loaded::Io(e),
        }
    }

    /// The document in a file's bytes (`Ok`, `Corrupt` with the reason and
    /// `Aside::Untouched`, or `UnsupportedVersion`): what `peek` and `load` read,
    /// without the file.
    pub fn decode(bytes: &[u8]) -> Loaded<T> {
        let corrupt = |reason: String| Loaded::Corrupt {
            reason,
            aside: Aside::Untouched,
        };
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => return corrupt(e.to_string()),
        };
        let Some(version) = value.get("version").and_then(serde_json::Value::as_u64) else {
            return corrupt("no format version (not a file harkd wrote)".into());
        };
        if version > u64::from(T::VERSION) {
            return Loaded::UnsupportedVersion {
                found: version,
                supported: T::VERSION,
            };
        }
        let doc = if version == u64::from(T::VERSION) {
            // From the bytes, not the value: errors keep their line and column.
            serde_json::from_slice::<In<T>>(bytes)
                .map(|d| d.doc)
                .map_err(|e| e.to_string())
        } else {
            T::upgrade(version, value)
        };
        match doc.and_then(|d| d.check().map(|()| d)) {
            Ok(d) => Loaded::Ok(d),
            Err(reason) => corrupt(reason),
        }
    }

    /// The bytes `save` writes.
    pub fn render(doc: &T) -> Result<Vec<u8>, serde_json::Error> {
        let mut text = serde_json::to_vec_pretty(&Out {
            version: T::VERSION,
            doc,
        })?;
        text.push(b'\n');
        Ok(text)
    }

    /// Writes the document atomically and durably, unless the file there is of
    /// a newer format version.
    pub fn save(&self, doc: &T) -> Result<(), SaveError> {
        let text = Self::render(doc).map_err(std::io::Error::other)?;
        if let Some(found) = self.newer_on_disk() {
            return Err(SaveError::Newer {
                found,
                supported: T::VERSION,
            });
        }
        write_atomic(&self.path, &text)?;
        Ok(())
    }

    /// The version of the file there, if it is newer than this harkd's.
    fn newer_on_disk(&self) -> Option<u64> {
        #[derive(Deserialize)]
        struct Version {
            version: u64,
        }
        let bytes = fs::read(&self.path).ok()?;
        let v = serde_json::from_slice::<Version>(&bytes).ok()?.version;
        (v > u64::from(T::VERSION)).then_some(v)
    }
}

impl<T> fmt::Display for Store<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

/// Milliseconds every write sleeps first (the test hook; 0: none).
static TEST_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// Makes every `write_atomic` (so every store save) sleep `delay` before
/// writing: a test hook standing in for a slow SD card. `Duration::ZERO` ends it.
pub fn set_test_delay(delay: Duration) {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    TEST_DELAY_MS.store(ms, Ordering::Relaxed);
}

/// The delay `HARK_TEST_SLOW_STORE_MS` asks for (`harkd run --test-hooks`
/// only): `Ok(None)` when unset, an error for a value that is not a number of
/// milliseconds.
pub fn test_delay_from_env() -> Result<Option<Duration>, String> {
    match std::env::var("HARK_TEST_SLOW_STORE_MS") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("HARK_TEST_SLOW_STORE_MS: {e}")),
        Ok(v) => parse_test_delay(&v)
            .map(Some)
            .map_err(|e| format!("HARK_TEST_SLOW_STORE_MS={v:?}: {e}")),
    }
}

fn parse_test_delay(ms: &str) -> Result<Duration, std::num::ParseIntError> {
    ms.trim().parse::<u64>().map(Duration::from_millis)
}

/// The temp file a write of `path` goes through (a dot file beside it).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    dir.join(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` atomically and durably (blocking: call it off the
/// async runtime).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let delay = TEST_DELAY_MS.load(Ordering::Relaxed);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
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

    /// Version 2 of a small document; version 1 had `count` as a string.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Doc {
        name: String,
        count: u32,
    }

    impl Document for Doc {
        const VERSION: u32 = 2;
        fn upgrade(version: u64, doc: serde_json::Value) -> Result<Self, String> {
            #[derive(Deserialize)]
            struct V1 {
                name: String,
                count: String,
            }
            if version != 1 {
                return Err(format!("format version {version} is not one this reads"));
            }
            let old: V1 = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            Ok(Doc {
                name: old.name,
                count: old.count.parse().map_err(|e| format!("count: {e}"))?,
            })
        }
    }

    fn doc() -> Doc {
        Doc {
            name: "garden \"ü\"".into(),
            count: 3,
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

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

    #[test]
    fn round_trip_and_the_format_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s: Store<Doc> = Store::new(dir.path().join("doc.json"));
        assert!(matches!(s.load(1), Loaded::Missing));
        s.save(&doc()).unwrap();
        assert_eq!(
            fs::read_to_string(s.path()).unwrap(),
            "{\n  \"version\": 2,\n  \"name\": \"garden \\\"ü\\\"\",\n  \"count\": 3\n}\n"
        );
        match s.load(1) {
            Loaded::Ok(d) => assert_eq!(d, doc()),
            other => panic!("{other:?}"),
        }
        assert_eq!(files(dir.path()), ["doc.json"]);
    }

    #[test]
    fn an_older_version_is_upgraded_and_saved_as_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let s: Store<Doc> = Store::new(dir.path().join("doc.json"));
        fs::write(
            s.path(),
            "{\"version\": 1, \"name\": \"garden \\\"ü\\\"\", \"count\": \"3\"}",
        )
        .unwrap();
        let Loaded::Ok(d) = s.load(1) else {
            panic!("not upgraded")
        };
        assert_eq!(d, doc());
        s.save(&d).unwrap();
        assert!(
            fs::read_to_string(s.path())
                .unwrap()
                .contains("\"version\": 2")
        );
        // An older version the type cannot read is corrupt (kept aside).
        fs::write(s.path(), "{\"version\": 0, \"name\": \"x\", \"count\": 1}").unwrap();
        let out = s.load(5);
        assert!(
            matches!(&out, Loaded::Corrupt { aside: Aside::Kept(k), .. }
                if k.ends_with("doc.json.corrupt-5")),
            "{out:?}"
        );
    }

    #[test]
    fn corrupt_files_are_kept_aside_by_load_and_left_by_peek() {
        let full = Store::<Doc>::render(&doc()).unwrap();
        for (what, bytes) in [
            ("garbage", b"\x00\xffnot json".to_vec()),
            ("empty", vec![]),
            ("truncated", full[..full.len() / 2].to_vec()),
            ("no version", b"{\"name\": \"x\", \"count\": 1}".to_vec()),
            ("a string version", b"{\"version\": \"2\"}".to_vec()),
            ("wrong fields", b"{\"version\": 2, \"name\": 7}".to_vec()),
            ("not an object", b"[2]".to_vec()),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let s: Store<Doc> = Store::new(dir.path().join("doc.json"));
            fs::write(s.path(), &bytes).unwrap();
            let peeked = s.peek();
            assert!(
                matches!(
                    peeked,
                    Loaded::Corrupt {
                        aside: Aside::Untouched,
                        ..
                    }
                ),
                "{what}: {peeked:?}"
            );
            assert_eq!(fs::read(s.path()).unwrap(), bytes, "{what}: peek moved it");
            let loaded = s.load(9);
            let problem = loaded.problem().unwrap();
            assert!(problem.contains("kept aside as"), "{what}: {problem}");
            assert_eq!(
                fs::read(dir.path().join("doc.json.corrupt-9")).unwrap(),
                bytes,
                "{what}"
            );
            assert!(!s.path().exists(), "{what}");
        }
    }

    #[test]
    fn a_newer_version_is_refused_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let s: Store<Doc> = Store::new(dir.path().join("doc.json"));
        let newer = b"{\"version\": 3, \"name\": \"x\", \"count\": 1, \"new\": true}\n";
        fs::write(s.path(), newer).unwrap();
        for out in [s.peek(), s.load(1)] {
            assert!(
                matches!(
                    out,
                    Loaded::UnsupportedVersion {
                        found: 3,
                        supported: 2
                    }
                ),
                "{out:?}"
            );
        }
        let e = s.save(&doc()).unwrap_err();
        assert!(matches!(e, SaveError::Newer { found: 3, .. }), "{e}");
        assert!(e.to_string().contains("not overwritten"), "{e}");
        assert_eq!(fs::read(s.path()).unwrap(), newer);
        assert_eq!(files(dir.path()), ["doc.json"]);
    }

    #[test]
    fn an_unreadable_file_is_an_io_outcome() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: it exists and cannot be read.
        let s: Store<Doc> = Store::new(dir.path().to_path_buf());
        assert!(matches!(s.peek(), Loaded::Io(_)), "{:?}", s.peek());
        assert!(matches!(s.load(1), Loaded::Io(_)));
        assert!(dir.path().is_dir());
    }

    /// A tmpfs of 64 KiB mounted on a temp dir, unmounted on drop (root only).
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount() -> Option<Tmpfs> {
            let dir = tempfile::tempdir().ok()?;
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "hark-test"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(Tmpfs(dir))
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .status();
        }
    }

    #[test]
    fn a_full_disk_keeps_the_old_file_and_leaves_no_temp_file() {
        // A real full file system: a small tmpfs, filled. Mounting needs root
        // (CAP_SYS_ADMIN); elsewhere this test says so and passes.
        let Some(fs_) = Tmpfs::mount() else {
            eprintln!("SKIP: cannot mount a tmpfs here (not root?)");
            return;
        };
        let s: Store<Doc> = Store::new(fs_.0.path().join("doc.json"));
        s.save(&doc()).unwrap();
        let old = fs::read(s.path()).unwrap();
        // Fill the file system to the last byte.
        let mut filler = File::create(fs_.0.path().join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        let mut full = false;
        for _ in 0..1024 {
            match filler.write_all(&chunk) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "a 64 KiB tmpfs took 4 MiB");
        drop(filler);
        let bigger = Doc {
            name: "x".repeat(16 * 1024),
            count: 4,
        };
        let e = s.save(&bigger).unwrap_err();
        assert!(
            matches!(&e, SaveError::Io(io) if io.raw_os_error() == Some(28)),
            "{e}"
        );
        assert_eq!(fs::read(s.path()).unwrap(), old, "the old file changed");
        assert_eq!(files(fs_.0.path()), ["doc.json", "filler"]);
        match s.load(1) {
            Loaded::Ok(d) => assert_eq!(d, doc()),
            other => panic!("{other:?}"),
        }
        // Room again: the next save lands.
        fs::remove_file(fs_.0.path().join("filler")).unwrap();
        s.save(&bigger).unwrap();
        assert!(matches!(s.load(1), Loaded::Ok(d) if d == bigger));
    }

    #[test]
    fn the_test_delay_is_a_number_of_milliseconds() {
        // The parsing only: setting the delay here would slow every other
        // test's writes in this process (tests/deadman.rs sets it through harkd).
        assert_eq!(parse_test_delay(" 3000\n"), Ok(Duration::from_secs(3)));
        assert!(parse_test_delay("3s").is_err());
        assert!(parse_test_delay("").is_err());
    }
}

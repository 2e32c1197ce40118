//! The janitor: a thread of its own (file system calls can block for seconds on
//! a slow SD card; nothing else waits for them) that every [`PASS`], and when
//! a segment is closed, reads the recording directory and the free space,
//! applies retention ([`super::plan`]) and says whether recording may go on.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::config::{RecordingConfig, validate_stream_name};
use crate::state::{DiskStatus, OnDisk};

/// Time between two passes when nothing asks for one sooner.
pub const PASS: Duration = Duration::from_secs(10);

/// What recorders and the janitor share.
pub struct Shared {
    /// Segments being written: never deleted.
    open: Mutex<HashSet<PathBuf>>,
    /// The floor of free space holds (see `super::plan`).
    space_ok: AtomicBool,
    free: AtomicU64,
    wake: (Mutex<bool>, Condvar),
    stop: AtomicBool,
}

impl Shared {
    pub fn space_ok(&self) -> bool {
        self.space_ok.load(Ordering::Acquire)
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    pub fn opened(&self, path: &Path) {
        lock(&self.open).insert(path.to_path_buf());
    }

    pub fn closed(&self, path: &Path) {
        lock(&self.open).remove(path);
        self.wake();
    }

    /// Asks for a pass now.
    pub fn wake(&self) {
        let (m, cv) = &self.wake;
        *lock(m) = true;
        cv.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running janitor; stopped (and joined) when dropped.
pub struct Janitor {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Janitor {
    /// Starts the thread after a first pass made here (so that recording
    /// starts knowing whether there is room). `report` gets every pass's view.
    pub fn start(
        cfg: RecordingConfig,
        report: Box<dyn Fn(DiskStatus) + Send>,
    ) -> std::io::Result<Janitor> {
        let shared = Arc::new(Shared {
            open: Mutex::default(),
            space_ok: AtomicBool::new(true),
            free: AtomicU64::new(0),
            wake: (Mutex::new(false), Condvar::new()),
            stop: AtomicBool::new(false),
        });
        let mut state = Pass::default();
        report(state.run(&cfg, &shared));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hark-janitor".into())
            .spawn(move || {
                loop {
                    {
                        let (m, cv) = &s.wake;
                        let mut woken = lock(m);
                        if !*woken {
                            woken = cv
                                .wait_timeout(woken, PASS)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                        *woken = false;
                    }
                    if s.stop.load(Ordering::Acquire) {
                        return;
                    }
                    report(state.run(&cfg, &s));
                }
            })?;
        Ok(Janitor {
            shared,
            thread: Some(thread),
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one pass remembers for the next.
#[derive(Default)]
struct Pass {
    deleted: u64,
    /// Files that could not be deleted, so each is logged once.
    undeletable: HashSet<PathBuf>,
    was_paused: bool,
}

impl Pass {
    fn run(&mut self, cfg: &RecordingConfig, shared: &Shared) -> DiskStatus {
        let mut error = String::new();
        if let Err(e) = std::fs::create_dir_all(&cfg.directory) {
            error = format!("cannot create {}: {e}", cfg.directory.display());
        }
        let segments = scan(&cfg.directory, &mut error);
        let free = match super::free_bytes(&cfg.directory) {
            Ok(f) => Some(f),
            Err(e) => {
                error = format!(
                    "cannot read the free space of {}: {e}",
                    cfg.directory.display()
                );
                None
            }
        };
        let open = lock(&shared.open).clone();
        let now = SystemTime::now();
        let trusted = super::clock_trusted(cfg.trust_clock);
        // Without a reading of the free space, only age and size apply, and
        // recording goes on (a write error pauses it anyway).
        let plan = super::plan(
            &segments,
            &open,
            now,
            trusted,
            free.unwrap_or(u64::MAX),
            cfg,
            !self.was_paused,
        );
        let mut gone: HashSet<&Path> = HashSet::new();
        for path in &plan.delete {
            match std::fs::remove_file(path) {
                Ok(()) => {
                    self.deleted += 1;
                    gone.insert(path);
                    tracing::debug!(file = %path.display(), "retention deleted a segment");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    gone.insert(path);
                }
                Err(e) => {
                    error = format!("cannot delete {}: {e}", path.display());
                    if self.undeletable.insert(path.clone()) {
                        tracing::warn!(file = %path.display(), error = %e, "retention cannot delete a segment");
                    }
                }
            }
        }
        let free_now = match free {
            Some(_) if !plan.delete.is_empty() => super::free_bytes(&cfg.directory).ok(),
            f => f,
        };
        let free_now = free_now.unwrap_or(plan.free_after);
        let space_ok = if free.is_some() {
            super::plan(&[], &open, now, trusted, free_now, cfg, !self.was_paused).space_ok
        } else {
            true
        };
        if space_ok == self.was_paused {
            if space_ok {
                tracing::info!(free_bytes = free_now, "recording: free space is back");
            } else {
                tracing::warn!(
                    free_bytes = free_now,
                    min_free_bytes = cfg.min_free_bytes,
                    "recording: the disk is full; recording pauses"
                );
            }
        }
        self.was_paused = !space_ok;
        shared.free.store(free_now, Ordering::Relaxed);
        shared.space_ok.store(space_ok, Ordering::Release);
        let mut streams: BTreeMap<String, OnDisk> = BTreeMap::new();
        let mut kept: Vec<&super::Segment> = segments
            .iter()
            .filter(|s| !gone.contains(s.path.as_path()))
            .collect();
        kept.sort_by(|a, b| a.path.cmp(&b.path));
        for s in kept {
            let d = streams.entry(s.stream.clone()).or_default();
            let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned());
            d.segments += 1;
            d.disk_bytes += s.bytes;
            if d.oldest.is_none() {
                d.oldest = name.clone();
            }
            d.newest = name;
        }
        DiskStatus {
            directory: cfg.directory.display().to_string(),
            free_bytes: free_now,
            space_ok,
            deleted: self.deleted,
            error,
            streams,
        }
    }
}

/// Every segment under `dir/<stream>/` that carries a name we gave it.
fn scan(dir: &Path, error: &mut String) -> Vec<super::Segment> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            *error = format!("cannot read {}: {e}", dir.display());
            return out;
        }
    };
    for entry in entries.flatten() {
        let Ok(stream) = entry.file_name().into_string() else {
            continue;
        };
        if validate_stream_name(&stream).is_err() || !entry.path().is_dir() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for f in files.flatten() {
            let Ok(name) = f.file_name().into_string() else {
                continue;
            };
            let Some(parsed) = super::parse_name(&stream, &name) else {
                continue;
            };
            let Ok(meta) = f.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            out.push(super::Segment {
                path: f.path(),
                stream: stream.clone(),
                bytes: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                unsynced: parsed.unsynced,
            });
        }
    }
    out
}

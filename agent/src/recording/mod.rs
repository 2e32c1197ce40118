//! Recording to local files: what does not need GStreamer. Segment names (a
//! person can sort them, a script can parse them), where cuts fall, whether the
//! wall clock can be trusted, and which old segments retention deletes.
//!
//! Owns: the names and the retention rules (pure, tested here), and the
//! janitor thread that applies them (`janitor.rs`). Must not touch: pipelines
//! (`media/recorder.rs` writes the files).
//!
//! A segment of stream `kitchen` started at 14:10:00 UTC on 5 December 2026 is
//! `<directory>/kitchen/kitchen_20261205T141000Z.opus`; started before the
//! clock was trusted, `kitchen_20261205T141000Z-unsynced.opus`; a name already
//! taken (a clock set back, a restart within the same second) gets `-2`, `-3`...
//! before the extension, so nothing is ever overwritten.

pub mod janitor;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Codec, RecordingConfig, TrustClock};

/// The marker in the name of a segment started before the clock was trusted.
pub const UNSYNCED: &str = "-unsynced";

/// The file extension of a codec's recordings: Ogg Opus (`.opus`, RFC 7845),
/// FLAC for L16 (lossless), ADTS AAC, MP3. Every one stays decodable when cut
/// short: Ogg pages and FLAC, ADTS and MP3 frames each carry their own sync word.
pub fn extension(codec: Codec) -> &'static str {
    match codec {
        Codec::Opus => "opus",
        Codec::L16 => "flac",
        Codec::Aac => "aac",
        Codec::Mp3 => "mp3",
    }
}

const EXTENSIONS: [&str; 4] = ["opus", "flac", "aac", "mp3"];

/// `2026-12-05T14:10:00Z`: the same moment as [`stamp`], as RFC 3339 writes it
/// (alert bodies, the status endpoint).
pub fn rfc3339(t: SystemTime) -> String {
    let s = stamp(t);
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
}

/// `20261205T141000Z` for a time (UTC, whole seconds).
pub fn stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The file name of a segment (without directory); `n` > 1 when the plain
/// name is taken.
pub fn segment_name(stream: &str, start: SystemTime, trusted: bool, n: u32, ext: &str) -> String {
    let marker = if trusted { "" } else { UNSYNCED };
    let count = if n > 1 {
        format!("-{n}")
    } else {
        String::new()
    };
    format!("{stream}_{}{marker}{count}.{ext}", stamp(start))
}

/// What a segment's name says, for a file in the stream's own directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub stamp: String,
    pub unsynced: bool,
}

/// Parses a name `segment_name` made for `stream`; `None` for any other file
/// (retention never touches a file it did not name).
pub fn parse_name(stream: &str, name: &str) -> Option<Parsed> {
    let rest = name.strip_prefix(stream)?.strip_prefix('_')?;
    let (rest, ext) = rest.rsplit_once('.')?;
    if !EXTENSIONS.contains(&ext) {
        return None;
    }
    let stamp = rest.get(..16)?;
    let ok_stamp = stamp.char_indices().all(|(i, c)| match i {
        8 => c == 'T',
        15 => c == 'Z',
        _ => c.is_ascii_digit(),
    });
    if !ok_stamp {
        return None;
    }
    let mut tail = &rest[16..];
    let unsynced = match tail.strip_prefix(UNSYNCED) {
        Some(t) => {
            tail = t;
            true
        }
        None => false,
    };
    if let Some(n) = tail.strip_prefix('-') {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
            return None;
        }
    } else if !tail.is_empty() {
        return None;
    }
    Some(Parsed {
        stamp: stamp.to_string(),
        unsynced,
    })
}

/// A free path for a new segment in `dir` (which is the stream's directory).
pub fn free_path(dir: &Path, stream: &str, start: SystemTime, trusted: bool, ext: &str) -> PathBuf {
    let mut n = 1;
    loop {
        let p = dir.join(segment_name(stream, start, trusted, n, ext));
        if n >= 10_000 || !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// How long the segment started at `start` runs. With a trusted clock, until
/// the next multiple of `segment` since the epoch (so 10-minute segments cut
/// at :00, :10, ...), skipping a cut less than 2 s away; else `segment`.
pub fn segment_length(start: SystemTime, segment: Duration, trusted: bool) -> Duration {
    if !trusted || segment.is_zero() {
        return segment;
    }
    let since = start.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seg = segment.as_nanos();
    let into = since.as_nanos() % seg;
    let left = Duration::from_nanos(u64::try_from(seg - into).unwrap_or(u64::MAX));
    if left < Duration::from_secs(2) {
        left + segment
    } else {
        left
    }
}

/// Whether the kernel says the clock is synchronised (an NTP client set it and
/// keeps it), as `adjtimex(2)` reports: anything but `TIME_ERROR`.
#[allow(unsafe_code)]
pub fn kernel_clock_synced() -> bool {
    // SAFETY: adjtimex with modes = 0 only reads; `tx` is a valid, zeroed timex.
    let state = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        libc::adjtimex(&mut tx)
    };
    state >= 0 && state != libc::TIME_ERROR
}

pub fn clock_trusted(trust: TrustClock) -> bool {
    match trust {
        TrustClock::Always => true,
        TrustClock::Never => false,
        TrustClock::Synced => kernel_clock_synced(),
    }
}

/// Bytes free for an unprivileged writer on the filesystem holding `path`.
#[allow(unsafe_code)]
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid C string; `st` is written by statvfs before it is read.
    let (rc, st) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st), st)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// One segment on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub path: PathBuf,
    pub stream: String,
    pub bytes: u64,
    pub modified: SystemTime,
    pub unsynced: bool,
}

/// Above the floor by this much before a paused recording resumes, so that it
/// does not pause and resume with every write.
pub const RESUME_MARGIN: u64 = 1024 * 1024;

/// What retention does now.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Oldest first.
    pub delete: Vec<PathBuf>,
    /// Free bytes once those are gone (as far as their sizes tell).
    pub free_after: u64,
    /// Recording may go on (or resume): the floor of free space holds.
    pub space_ok: bool,
}

/// Retention, oldest first (by modification time: the last write), never an
/// open file: by age (`keep_days`, only with a trusted clock and only for
/// segments named by one: an unsynced name's age is unknown), then by total
/// size (`max_bytes`), then by the floor of free space (`min_free_bytes`).
/// `was_ok`: whether recording was allowed until now (hysteresis).
pub fn plan(
    segments: &[Segment],
    open: &HashSet<PathBuf>,
    now: SystemTime,
    clock_trusted: bool,
    free: u64,
    cfg: &RecordingConfig,
    was_ok: bool,
) -> Plan {
    let mut order: Vec<&Segment> = segments.iter().collect();
    order.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.path.cmp(&b.path)));
    let mut gone = vec![false; order.len()];
    let mut total: u64 = order.iter().map(|s| s.bytes).sum();
    let mut free_after = free;
    let take = |i: usize, total: &mut u64, free_after: &mut u64, gone: &mut Vec<bool>| {
        gone[i] = true;
        *total = total.saturating_sub(order[i].bytes);
        *free_after = free_after.saturating_add(order[i].bytes);
    };
    if cfg.keep_days > 0 && clock_trusted {
        let max_age = Duration::from_secs(cfg.keep_days.saturating_mul(86_400));
        for (i, s) in order.iter().enumerate() {
            let old = now
                .duration_since(s.modified)
                .is_ok_and(|age| age > max_age);
            if old && !s.unsynced && !open.contains(&s.path) {
                take(i, &mut total, &mut free_after, &mut gone);
            }
        }
    }
    for i in 0..order.len() {
        let over_size = cfg.max_bytes > 0 && total > cfg.max_bytes;
        let under_floor = free_after < cfg.min_free_bytes;
        if !(over_size || under_floor) {
            break;
        }
        if !gone[i] && !open.contains(&order[i].path) {
            take(i, &mut total, &mut free_after, &mut gone);
        }
    }
    let need = if was_ok {
        cfg.min_free_bytes
    } else {
        cfg.min_free_bytes.saturating_add(RESUME_MARGIN)
    };
    Plan {
        delete: order
            .iter()
            .zip(&gone)
            .filter(|(_, g)| **g)
            .map(|(s, _)| s.path.clone())
            .collect(),
        free_after,
        space_ok: free_after >= need,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(stamp(at(0)), "19700101T000000Z");
        // 2026-12-05 14:10:00 UTC
        assert_eq!(stamp(at(1_796_479_800)), "20261205T141000Z");
        // A leap day.
        assert_eq!(stamp(at(951_782_400)), "20000229T000000Z");
        assert_eq!(stamp(at(4_102_444_799)), "20991231T235959Z");
        assert_eq!(rfc3339(at(1_796_479_800)), "2026-12-05T14:10:00Z");
    }

    #[test]
    fn names_round_trip_and_foreign_files_are_not_ours() {
        let t = at(1_796_479_800);
        for (trusted, n) in [(true, 1), (false, 1), (true, 2), (false, 17)] {
            let name = segment_name("my_mic-2", t, trusted, n, "opus");
            assert_eq!(
                parse_name("my_mic-2", &name),
                Some(Parsed {
                    stamp: "20261205T141000Z".into(),
                    unsynced: !trusted
                }),
                "{name}"
            );
        }
        assert_eq!(
            segment_name("kitchen", t, false, 2, "flac"),
            "kitchen_20261205T141000Z-unsynced-2.flac"
        );
        for foreign in [
            "kitchen_20261205T141000Z.opus.part",
            "kitchen_20261205T141000Z.txt",
            "kitchen_2026120XT141000Z.opus",
            "kitchen_20261205T141000Z-x.opus",
            "kitchen_20261205T141000Z-0.opus",
            "kitchen_20261205T141000Z-.opus",
            "kitchen-2_20261205T141000Z.opus",
            "notes.opus",
            "kitchen_.opus",
            "kitchen_20261205T141000Zé.opus",
        ] {
            assert_eq!(parse_name("kitchen", foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_taken_name_is_never_reused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let t = at(1_796_479_800);
        let first = free_path(dir.path(), "k", t, true, "opus");
        std::fs::write(&first, b"x").unwrap_or_else(|e| panic!("{e}"));
        let second = free_path(dir.path(), "k", t, true, "opus");
        assert_ne!(first, second);
        assert!(second.ends_with("k_20261205T141000Z-2.opus"));
    }

    #[test]
    fn cuts_fall_on_multiples_of_the_segment_with_a_trusted_clock() {
        let ten = Duration::from_secs(600);
        // 14:03:20 -> 14:10:00
        assert_eq!(
            segment_length(at(1_796_479_800 - 400), ten, true),
            Duration::from_secs(400)
        );
        // 1 s before a cut: the next one.
        assert_eq!(
            segment_length(at(1_796_479_799), ten, true),
            Duration::from_secs(601)
        );
        assert_eq!(segment_length(at(1_796_479_800), ten, true), ten);
        // Untrusted: a full segment from the start.
        assert_eq!(segment_length(at(1_796_479_799), ten, false), ten);
    }

    fn cfg(keep_days: u64, max_bytes: u64, min_free_bytes: u64) -> RecordingConfig {
        RecordingConfig {
            directory: PathBuf::from("/r"),
            segment: Duration::from_secs(600),
            keep_days,
            max_bytes,
            min_free_bytes,
            trust_clock: TrustClock::Synced,
        }
    }

    fn seg(name: &str, bytes: u64, modified: u64, unsynced: bool) -> Segment {
        Segment {
            path: PathBuf::from(format!("/r/k/{name}")),
            stream: "k".into(),
            bytes,
            modified: at(modified),
            unsynced,
        }
    }

    fn names(p: &Plan) -> Vec<String> {
        p.delete
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    const DAY: u64 = 86_400;

    #[test]
    fn retention_by_age_size_and_free_space_oldest_first_never_the_open_file() {
        let now = at(100 * DAY);
        let segs = vec![
            seg("c", 100, 99 * DAY, false),
            seg("a", 100, 10 * DAY, false),
            seg("old-unsynced", 100, 11 * DAY, true),
            seg("b", 100, 50 * DAY, false),
            seg("open", 100, 12 * DAY, false),
        ];
        let open: HashSet<PathBuf> = [PathBuf::from("/r/k/open")].into();
        // Age: 30 days; the open file and the unsynced one stay.
        let p = plan(&segs, &open, now, true, u64::MAX, &cfg(30, 0, 0), true);
        assert_eq!(names(&p), ["a", "b"]);
        assert!(p.space_ok);
        // An untrusted clock deletes nothing by age.
        let p = plan(&segs, &open, now, false, u64::MAX, &cfg(30, 0, 0), true);
        assert!(p.delete.is_empty());
        // Size: 500 bytes, at most 250: the oldest three that are not open.
        let p = plan(&segs, &open, now, false, u64::MAX, &cfg(0, 250, 0), true);
        assert_eq!(names(&p), ["a", "old-unsynced", "b"]);
        // Free space: 50 free, floor 220: the oldest two not open.
        let p = plan(&segs, &open, now, false, 50, &cfg(0, 0, 220), true);
        assert_eq!(names(&p), ["a", "old-unsynced"]);
        assert_eq!(p.free_after, 250);
        assert!(p.space_ok);
        // Not enough even with every closed segment gone: all of them, and pause.
        let p = plan(&segs, &open, now, false, 0, &cfg(0, 0, 10_000), true);
        assert_eq!(names(&p), ["a", "old-unsynced", "b", "c"]);
        assert!(!p.space_ok);
    }

    #[test]
    fn a_paused_recording_resumes_only_with_a_margin_above_the_floor() {
        let none: HashSet<PathBuf> = HashSet::new();
        let c = cfg(0, 0, 1000);
        let p = plan(&[], &none, at(0), true, 1000, &c, true);
        assert!(p.space_ok);
        let p = plan(&[], &none, at(0), true, 1000, &c, false);
        assert!(!p.space_ok);
        let p = plan(&[], &none, at(0), true, 1000 + RESUME_MARGIN, &c, false);
        assert!(p.space_ok);
    }

    #[test]
    fn free_bytes_reads_the_filesystem() {
        let free = free_bytes(Path::new("/")).unwrap_or_else(|e| panic!("{e}"));
        assert!(free > 0);
        assert!(free_bytes(Path::new("/nonexistent/x")).is_err());
    }
}

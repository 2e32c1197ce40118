//! Recording the encoded stream to files, beside the RTSP clients.
//!
//! A recorder is one more reader of a stream's [`Fanout`], like an RTSP
//! client: the encoded buffers, not encoded again (an L16 stream is written
//! as FLAC, losslessly). Each segment is a pipeline of its own (`appsrc !
//! container ! filesink`), so that a full disk or a write error stops that
//! pipeline only: the capture and its clients never see it. Segments are cut
//! at wall-clock multiples of the segment length once the clock is trusted
//! (`recording::segment_length`); the next segment, once playing, takes the
//! last one's place on the fan-out in one step (`Fanout::swap_recorder`),
//! and the last gets its end-of-stream one tick later, so no buffer is lost
//! or written twice at a cut.
//!
//! Owns: the segment pipelines. Must not touch: file names and retention
//! (`recording/`), stream state (the supervisor).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app::AppSrc;
use tokio::sync::mpsc::Sender;

use super::fanout::Fanout;
use super::reports::Reports;
use super::{Command, MediaEvent};
use crate::config::{Codec, RecordingConfig};
use crate::recording::{self, janitor};
use crate::state::{RecorderState, RecorderStatus};

/// How often recorders are looked after (cuts, pauses, status).
pub const TICK: Duration = Duration::from_millis(500);
/// A segment that failed is tried again after this (a full disk: as soon as
/// the janitor finds room).
const RETRY: Duration = Duration::from_secs(30);
/// A segment's end-of-stream is waited for at most this long.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Bytes written are reported at most this often unless something else changed.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// A segment's pipeline for `codec`: our appsrc, the container, the file.
/// Ogg for Opus (pages flushed at least every 0.5 s, each with its CRC: a cut
/// file plays to its last page; the muxer's audio pad is asked for by name,
/// since the appsrc has no caps yet when the description is linked), FLAC for
/// L16 (lossless), ADTS for AAC and MP3 frames as they are (both
/// self-synchronising).
pub fn segment_description(codec: Codec) -> String {
    let src = "appsrc name=src is-live=true format=time";
    let sink = "filesink name=sink buffer-mode=unbuffered sync=false async=false";
    let adts = "audio/mpeg,mpegversion=4,stream-format=adts";
    match codec {
        Codec::Opus => format!(
            "oggmux name=mux max-delay=500000000 max-page-delay=500000000 ! {sink} {src} ! mux.audio_%u"
        ),
        Codec::L16 => format!("{src} ! audioconvert ! flacenc ! {sink}"),
        Codec::Aac => format!("{src} ! aacparse ! {adts} ! {sink}"),
        Codec::Mp3 => format!("{src} ! mpegaudioparse ! {sink}"),
    }
}

struct Segment {
    /// The appsrc's address: the fan-out's id for it.
    id: usize,
    pipeline: gst::Pipeline,
    appsrc: AppSrc,
    path: PathBuf,
    ends: Instant,
    /// A buffer of audio went into it (a segment cut just before a stop or a
    /// stall may get none: its file is then removed, not left unplayable).
    got_audio: Arc<AtomicBool>,
    _watch: gst::bus::BusWatchGuard,
}

struct Closing {
    stream: String,
    seg: Segment,
    /// When its end-of-stream was sent (`None`: not yet, see `retired`).
    eos_sent: Option<Instant>,
    /// When it came off the fan-out. Its end-of-stream waits at least
    /// [`IN_FLIGHT`] after that: a buffer the capture thread took for it just
    /// before may still be on its way, and a segment already ended refuses it.
    retired: Instant,
    done: bool,
}

/// How long a segment off the fan-out still takes buffers in flight before
/// its end-of-stream (in practice: until the next tick).
const IN_FLIGHT: Duration = Duration::from_millis(250);

struct Recorder {
    codec: Codec,
    fanout: Arc<Fanout>,
    seg: Option<Segment>,
    /// Why it is paused.
    pause: Option<String>,
    /// The pause is a full disk (resumes when the janitor finds room).
    disk_full: bool,
    retry_at: Instant,
    bytes_closed: u64,
    segments_started: u64,
    last: Option<(RecorderStatus, Instant)>,
}

/// Every recorder of the media thread.
pub struct Recorders {
    cfg: RecordingConfig,
    events: Reports,
    cmd_tx: Sender<Command>,
    janitor: Option<janitor::Janitor>,
    ticker: Option<glib::Source>,
    by_stream: HashMap<String, Recorder>,
    closing: Vec<Closing>,
}

impl Recorders {
    pub fn new(cfg: RecordingConfig, events: Reports, cmd_tx: Sender<Command>) -> Recorders {
        Recorders {
            cfg,
            events,
            cmd_tx,
            janitor: None,
            ticker: None,
            by_stream: HashMap::new(),
            closing: Vec::new(),
        }
    }

    /// Starts recording `stream` (its first segment opens when audio flows).
    pub fn add(&mut self, stream: &str, codec: Codec, fanout: Arc<Fanout>) {
        if self.by_stream.contains_key(stream) {
            return;
        }
        self.ensure_running();
        self.by_stream.insert(
            stream.to_string(),
            Recorder {
                codec,
                fanout,
                seg: None,
                pause: None,
                disk_full: false,
                retry_at: Instant::now(),
                bytes_closed: 0,
                segments_started: 0,
                last: None,
            },
        );
        tracing::info!(stream, directory = %self.cfg.directory.display(), "recording");
        self.tick();
    }

    /// Stops recording `stream`, closing its segment properly.
    pub fn remove(&mut self, stream: &str) {
        let Some(mut r) = self.by_stream.remove(stream) else {
            return;
        };
        if let Some(seg) = r.seg.take() {
            self.close(stream, &r.fanout, seg);
        }
        self.events.send(MediaEvent::Recorder {
            stream: stream.to_string(),
            status: None,
        });
        self.tick();
    }

    /// Takes a segment off the fan-out; its end-of-stream follows at a later
    /// tick ([`IN_FLIGHT`]: what was in flight lands first), then it is
    /// finished.
    fn close(&mut self, stream: &str, fanout: &Fanout, seg: Segment) {
        fanout.detach(seg.id);
        self.retire(stream, seg);
    }

    /// A segment already off the fan-out: end-of-stream at a later tick.
    fn retire(&mut self, stream: &str, seg: Segment) {
        self.closing.push(Closing {
            stream: stream.to_string(),
            seg,
            eos_sent: None,
            retired: Instant::now(),
            done: false,
        });
    }

    /// The codec `stream` is recorded in, if it is.
    pub fn recording(&self, stream: &str) -> Option<Codec> {
        self.by_stream.get(stream).map(|r| r.codec)
    }

    /// The janitor and the tick, from the first recorder on.
    fn ensure_running(&mut self) {
        if self.janitor.is_none() {
            let events = self.events.clone();
            match janitor::Janitor::start(
                self.cfg.clone(),
                Box::new(move |disk| events.send(MediaEvent::RecordingDisk(Box::new(disk)))),
            ) {
                Ok(j) => self.janitor = Some(j),
                Err(e) => tracing::error!(error = %e, "cannot start the recording janitor"),
            }
        }
        if self.ticker.is_none() {
            let tx = self.cmd_tx.clone();
            let source = glib::timeout_source_new(
                TICK,
                Some("hark-record"),
                glib::Priority::DEFAULT,
                move || {
                    let _ = tx.try_send(Command::RecordTick);
                    glib::ControlFlow::Continue
                },
            );
            source.attach(glib::MainContext::thread_default().as_ref());
            self.ticker = Some(source);
        }
    }

    fn space(&self) -> (bool, u64) {
        self.janitor.as_ref().map_or((true, u64::MAX), |j| {
            let s = j.shared();
            (s.space_ok(), s.free_bytes())
        })
    }

    /// Cuts, pauses, retries and closes; reports what changed.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let (space_ok, free) = self.space();
        let names: Vec<String> = self.by_stream.keys().cloned().collect();
        for name in names {
            self.look_after(&name, now, space_ok, free);
        }
        self.finish_closing(now);
        self.report(now);
    }

    fn look_after(&mut self, name: &str, now: Instant, space_ok: bool, free: u64) {
        let Some(r) = self.by_stream.get_mut(name) else {
            return;
        };
        let live = r.fanout.is_live();
        let cut = match &r.seg {
            Some(_) if !space_ok => {
                let reason = format!(
                    "disk full: {free} bytes free, recording.min_free_bytes is {}",
                    self.cfg.min_free_bytes
                );
                tracing::warn!(stream = name, reason = %reason, "recording paused");
                r.pause = Some(reason);
                r.disk_full = true;
                true
            }
            Some(seg) => now >= seg.ends,
            None => false,
        };
        // The segment being cut stays attached until its successor is
        // playing, and the two change places in one step (`swap_recorder`);
        // when none opens (disk full, stream down) it is simply taken off.
        let old = if cut { r.seg.take() } else { None };
        let fanout = r.fanout.clone();
        // After a full disk, room means the floor and a margin above it (the
        // same rule as the janitor's), so that it does not pause at once again.
        let room = free
            >= self
                .cfg
                .min_free_bytes
                .saturating_add(recording::RESUME_MARGIN);
        let may_open = match (&r.pause, r.disk_full) {
            (None, _) => true,
            (Some(_), true) => space_ok && room,
            (Some(_), false) => now >= r.retry_at && space_ok,
        };
        if r.seg.is_some() || !live || !may_open {
            if let Some(old) = old {
                self.close(name, &fanout, old);
            }
            return;
        }
        let swapped = match open_segment(&self.cfg, name, r.codec, &self.cmd_tx) {
            Ok(seg) => {
                if let Some(j) = &self.janitor {
                    j.shared().opened(&seg.path);
                }
                match &old {
                    Some(o) => r.fanout.swap_recorder(o.id, seg.id, &seg.appsrc),
                    None => r.fanout.attach_recorder(seg.id, &seg.appsrc),
                }
                if r.pause.take().is_some() {
                    tracing::info!(stream = name, "recording resumed");
                }
                r.disk_full = false;
                r.segments_started += 1;
                tracing::info!(stream = name, file = %seg.path.display(), "recording segment");
                r.seg = Some(seg);
                true
            }
            Err(reason) => {
                if r.pause.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(stream = name, reason = %reason, retry_s = RETRY.as_secs(), "recording paused");
                }
                r.pause = Some(reason);
                r.disk_full = false;
                r.retry_at = now + RETRY;
                false
            }
        };
        match old {
            Some(old) if swapped => self.retire(name, old),
            Some(old) => self.close(name, &fanout, old),
            None => {}
        }
    }

    /// A segment pipeline's bus said end-of-stream (`error` None) or failed.
    pub fn on_bus(&mut self, id: usize, error: Option<String>, no_space: bool) {
        let now = Instant::now();
        if let Some(c) = self.closing.iter_mut().find(|c| c.seg.id == id) {
            c.done = true;
            if let Some(e) = error {
                tracing::warn!(stream = %c.stream, error = %e, "recording segment failed while closing");
            }
            self.finish_closing(now);
            return;
        }
        let Some(error) = error else { return };
        let Some((name, r)) = self
            .by_stream
            .iter_mut()
            .find(|(_, r)| r.seg.as_ref().is_some_and(|s| s.id == id))
        else {
            return;
        };
        let Some(seg) = r.seg.take() else { return };
        r.fanout.detach(seg.id);
        if let Some(j) = &self.janitor {
            j.shared().wake();
        }
        tracing::warn!(stream = %name, file = %seg.path.display(), error = %error, "recording paused");
        r.pause = Some(error);
        // Out of space: resume as soon as the janitor finds room (see `look_after`).
        r.disk_full = no_space;
        r.retry_at = now + RETRY;
        self.closing.push(Closing {
            stream: name.clone(),
            seg,
            eos_sent: Some(now - CLOSE_WAIT),
            retired: now,
            done: true,
        });
        self.finish_closing(now);
        self.report(now);
    }

    fn finish_closing(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.closing.len() {
            let c = &mut self.closing[i];
            match c.eos_sent {
                None if now.duration_since(c.retired) < IN_FLIGHT => {
                    i += 1;
                    continue;
                }
                None => {
                    // Off the fan-out a while: what was in flight has landed.
                    let _ = c.seg.appsrc.end_of_stream();
                    c.eos_sent = Some(now);
                    i += 1;
                    continue;
                }
                Some(t) if !c.done && now.duration_since(t) < CLOSE_WAIT => {
                    i += 1;
                    continue;
                }
                Some(_) => {}
            }
            let c = self.closing.swap_remove(i);
            let _ = c.seg.pipeline.set_state(gst::State::Null);
            if !c.seg.got_audio.load(Ordering::Relaxed) {
                // No audio: a header at most, which players refuse.
                let _ = std::fs::remove_file(&c.seg.path);
                if let Some(j) = &self.janitor {
                    j.shared().closed(&c.seg.path);
                }
                tracing::debug!(stream = %c.stream, file = %c.seg.path.display(), "recording segment without audio removed");
                continue;
            }
            let size = std::fs::metadata(&c.seg.path).map_or(0, |m| m.len());
            if let Some(r) = self.by_stream.get_mut(&c.stream) {
                r.bytes_closed += size;
            }
            if let Some(j) = &self.janitor {
                j.shared().closed(&c.seg.path);
            }
            tracing::debug!(stream = %c.stream, file = %c.seg.path.display(), bytes = size, "recording segment closed");
        }
    }

    fn report(&mut self, now: Instant) {
        for (name, r) in &mut self.by_stream {
            let current = r
                .seg
                .as_ref()
                .map_or(0, |s| std::fs::metadata(&s.path).map_or(0, |m| m.len()));
            let status = RecorderStatus {
                state: if r.seg.is_some() {
                    RecorderState::Recording
                } else if r.pause.is_some() {
                    RecorderState::Paused
                } else {
                    RecorderState::Waiting
                },
                reason: r.pause.clone().unwrap_or_default(),
                file: r
                    .seg
                    .as_ref()
                    .and_then(|s| s.path.file_name().map(|n| n.to_string_lossy().into_owned())),
                bytes_written: r.bytes_closed + current,
                segments_started: r.segments_started,
                on_disk: Default::default(),
            };
            let send = match &r.last {
                None => true,
                Some((last, at)) => {
                    let same_but_bytes = RecorderStatus {
                        bytes_written: last.bytes_written,
                        ..status.clone()
                    } == *last;
                    !same_but_bytes
                        || (last.bytes_written != status.bytes_written
                            && now.duration_since(*at) >= REPORT_EVERY)
                }
            };
            if send {
                self.events.send(MediaEvent::Recorder {
                    stream: name.clone(),
                    status: Some(Box::new(status.clone())),
                });
                r.last = Some((status, now));
            }
        }
    }

    /// Ends every segment, waiting up to `deadline` for them to be written out.
    pub fn shutdown(&mut self, deadline: Duration) {
        let names: Vec<String> = self.by_stream.keys().cloned().collect();
        for name in names {
            if let Some(r) = self.by_stream.get_mut(&name)
                && let Some(seg) = r.seg.take()
            {
                let fanout = r.fanout.clone();
                self.close(&name, &fanout, seg);
            }
        }
        let started = Instant::now();
        for c in &self.closing {
            if c.eos_sent.is_none() {
                let _ = c.seg.appsrc.end_of_stream();
            }
        }
        for c in &mut self.closing {
            let left = deadline.saturating_sub(started.elapsed());
            if let Some(bus) = c.seg.pipeline.bus() {
                let _ = bus.timed_pop_filtered(
                    gst::ClockTime::from_nseconds(u64::try_from(left.as_nanos()).unwrap_or(0)),
                    &[gst::MessageType::Eos, gst::MessageType::Error],
                );
            }
            c.done = true;
            c.eos_sent = Some(started);
        }
        self.finish_closing(Instant::now());
        self.janitor = None;
    }
}

/// Builds, starts and names the file of a new segment of `stream`.
fn open_segment(
    cfg: &RecordingConfig,
    stream: &str,
    codec: Codec,
    cmd_tx: &Sender<Command>,
) -> Result<Segment, String> {
    let trusted = recording::clock_trusted(cfg.trust_clock);
    let dir = cfg.directory.join(stream);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let started = SystemTime::now();
    let path = recording::free_path(&dir, stream, started, trusted, recording::extension(codec));
    let location = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?
        .to_string();
    let pipeline = gst::parse::launch(&segment_description(codec))
        .map_err(|e| format!("cannot build the recording pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the recording pipeline is not a pipeline".to_string())?;
    let appsrc = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<AppSrc>().ok())
        .ok_or("the recording pipeline has no appsrc")?;
    if let Some(sink) = pipeline.by_name("sink") {
        sink.set_property("location", &location);
    }
    pipeline.use_clock(Some(&gst::SystemClock::obtain()));
    // Writing a segment can wait; capture must not wait for it.
    super::sched::deliver_in_background(pipeline.upcast_ref());
    let got_audio = Arc::new(AtomicBool::new(false));
    if let Some(pad) = appsrc.static_pad("src") {
        let got = got_audio.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, _info| {
            got.store(true, Ordering::Relaxed);
            gst::PadProbeReturn::Remove
        });
    }
    let id = appsrc.as_ptr() as usize;
    let bus = pipeline.bus().ok_or("the recording pipeline has no bus")?;
    let tx = cmd_tx.clone();
    let watch = bus
        .add_watch(move |_bus, msg| {
            let (error, no_space) = match msg.view() {
                gst::MessageView::Eos(_) => (None, false),
                gst::MessageView::Error(e) => (
                    Some(e.error().to_string()),
                    e.error().matches(gst::ResourceError::NoSpaceLeft),
                ),
                _ => return glib::ControlFlow::Continue,
            };
            let _ = tx.try_send(Command::RecorderBus {
                id,
                error,
                no_space,
            });
            glib::ControlFlow::Continue
        })
        .map_err(|e| format!("cannot watch the recording pipeline: {e}"))?;
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        let reason = bus
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(err) => Some(err.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| format!("the recording pipeline refused to start: {e}"));
        let _ = pipeline.set_state(gst::State::Null);
        return Err(format!("{}: {reason}", path.display()));
    }
    // Playing before it is fed: the fan-out skips a pipeline that is not yet
    // (a live pipeline gets there within the call; this waits if it did not).
    let _ = pipeline.state(gst::ClockTime::from_mseconds(500));
    Ok(Segment {
        id,
        pipeline,
        appsrc,
        path,
        ends: Instant::now() + recording::segment_length(started, cfg.segment, trusted),
        got_audio,
        _watch: watch,
    })
}

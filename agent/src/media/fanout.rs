//! Fan-out from one always-on capture pipeline to the RTSP clients' media.
//!
//! Each stream has one [`Fanout`]. The capture pipeline's appsink calls
//! [`Fanout::push`] for every encoded buffer; every RTSP media built for a client
//! has an `appsrc` registered here, and gets a shallow copy of each buffer (the
//! memory is shared, never copied). Clients join a running stream: nothing is
//! opened or started per client.
//!
//! Timestamps: capture and media pipelines both run on the system clock, so a
//! buffer's absolute time is `pts + capture base time`, and its time in a media
//! pipeline is that minus the media's base time. Exact, no jitter from pushing.
//!
//! Locking: one mutex per fan-out, never held while calling into anything that
//! can block (appsrc pushes are non-blocking: leaky queues).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app::AppSrc;

struct Client {
    /// Identifies the RTSP media the appsrc belongs to.
    media_id: usize,
    appsrc: glib::WeakRef<AppSrc>,
    /// Added to every timestamp for this client, fixed at its first buffer. A media
    /// starts "now", but the buffer in hand was captured a frame or two ago (its
    /// time is before the media's start); shifting the client's timeline by that
    /// much sends it at once instead of dropping it and waiting for the next one.
    shift: Option<gst::ClockTime>,
    /// A recorder (`recorder.rs`): not an RTSP client, not counted as one.
    recorder: bool,
    /// A buffer reached it. Until then its media is still being prepared, and
    /// its client's DESCRIBE waits for that buffer.
    fed: bool,
}

#[derive(Default)]
struct Inner {
    caps: Option<gst::Caps>,
    clients: Vec<Client>,
    /// Whether the capture pipeline currently delivers audio.
    live: bool,
    /// When the last buffer came.
    last: Option<Instant>,
}

/// Shared between the appsink's streaming thread and the RTSP server's callbacks.
#[derive(Default)]
pub struct Fanout {
    inner: Mutex<Inner>,
    /// Encoded bytes accepted by clients' media, for the metrics.
    sent: AtomicU64,
    /// Held while a client count is read and handed on (`report_clients`).
    report: Mutex<()>,
}

/// How much a client may fall behind before its oldest buffers are dropped.
const CLIENT_QUEUE: gst::ClockTime = gst::ClockTime::from_mseconds(500);

/// A stream whose last buffer is older than this takes no new client: a
/// DESCRIBE would wait for the next buffer, and a stalled source has none to
/// give (it is declared stalled only seconds later). Every codec's frames are
/// 20-26 ms long, so a flowing stream is never this late.
const FRESH: Duration = Duration::from_secs(1);

impl Fanout {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave `Inner` inconsistent
        // (every update is a single assignment or Vec operation), so a poisoned
        // lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Registers the appsrc of a new client's media; returns the client count.
    pub fn attach(&self, media_id: usize, appsrc: &AppSrc) -> usize {
        self.add(media_id, appsrc, false, None)
    }

    /// Registers a recorder's appsrc (not counted as a client).
    pub fn attach_recorder(&self, id: usize, appsrc: &AppSrc) {
        self.add(id, appsrc, true, None);
    }

    /// Puts recorder `new` (its appsrc playing) in recorder `old`'s place in
    /// one step under the lock: every buffer goes to exactly one of them, so a
    /// segment cut neither loses nor doubles audio. (Attaching the next
    /// segment after detaching the last lost the buffers in between: a
    /// clean-clone CI run's lossless-cut test caught one.)
    pub fn swap_recorder(&self, old: usize, new: usize, appsrc: &AppSrc) {
        self.add(new, appsrc, true, Some(old));
    }

    /// Registers `appsrc` as `media_id`, taking `replaces` off in the same step.
    fn add(
        &self,
        media_id: usize,
        appsrc: &AppSrc,
        recorder: bool,
        replaces: Option<usize>,
    ) -> usize {
        appsrc.set_is_live(true);
        appsrc.set_format(gst::Format::Time);
        appsrc.set_stream_type(gstreamer_app::AppStreamType::Stream);
        appsrc.set_block(false);
        appsrc.set_leaky_type(gstreamer_app::AppLeakyType::Downstream);
        appsrc.set_max_time(CLIENT_QUEUE);
        let mut inner = self.lock();
        if let Some(caps) = &inner.caps {
            appsrc.set_caps(Some(caps));
        }
        if let Some(old) = replaces {
            inner.clients.retain(|c| c.media_id != old);
        }
        inner.clients.push(Client {
            media_id,
            appsrc: appsrc.downgrade(),
            shift: None,
            recorder,
            fed: false,
        });
        clients(&inner)
    }

    /// Reads the client count and hands it to `send`, one caller at a time:
    /// clients attach and detach on their own threads, and counts taken
    /// before could be handed on out of order (an old count last). `send`
    /// must not block (the reports board's is a brief lock).
    pub fn report_clients(&self, send: impl FnOnce(usize)) {
        let _one_at_a_time = self.report.lock().unwrap_or_else(|p| p.into_inner());
        let count = clients(&self.lock());
        send(count);
    }

    /// Forgets a client's media (or a recorder); returns the client count.
    pub fn detach(&self, media_id: usize) -> usize {
        let mut inner = self.lock();
        inner.clients.retain(|c| c.media_id != media_id);
        clients(&inner)
    }

    /// True when a new client can be served at once (audio is flowing, came
    /// within [`FRESH`], and its format is known).
    pub fn is_live(&self) -> bool {
        let inner = self.lock();
        inner.live && inner.caps.is_some() && inner.last.is_some_and(|t| t.elapsed() < FRESH)
    }

    /// The capture pipeline stopped: refuse new clients until audio returns,
    /// and fail the media of clients still waiting for their first buffer
    /// (their DESCRIBE is answered 503 instead of waiting for audio that may
    /// never come). Clients already playing stay attached: they resume when the
    /// pipeline is back.
    pub fn set_down(&self) {
        for src in self.go_down(|c| !c.fed && !c.recorder) {
            let error = gst::message::Error::builder(
                gst::StreamError::Failed,
                "the stream's capture stopped before this client got audio",
            )
            .src(&src)
            .build();
            // A media already gone has nothing left to fail.
            let _ = src.post_message(error);
        }
    }

    /// Marks the stream down and returns the appsrcs of the clients `pick`
    /// chooses, to be called outside the lock.
    fn go_down(&self, pick: impl Fn(&Client) -> bool) -> Vec<AppSrc> {
        let mut inner = self.lock();
        inner.live = false;
        inner
            .clients
            .iter()
            .filter(|c| pick(c))
            .filter_map(|c| c.appsrc.upgrade())
            .collect()
    }

    /// Ends every client's stream (EOS, which makes RTP senders say BYE).
    pub fn end_all(&self) {
        for src in self.go_down(|_| true) {
            // Already-stopped media answer with an error: nothing left to end.
            let _ = src.end_of_stream();
        }
    }

    /// Hands one encoded buffer to every client. Called on the capture
    /// pipeline's streaming thread.
    pub fn push(&self, sample: &gst::Sample, capture_base: gst::ClockTime) {
        let Some(buffer) = sample.buffer_owned() else {
            return;
        };
        let absolute = buffer.pts().map(|pts| pts + capture_base);
        let (targets, new_caps) = {
            let mut inner = self.lock();
            inner.live = true;
            inner.last = Some(Instant::now());
            let new_caps = match (sample.caps(), &inner.caps) {
                (Some(c), Some(old)) if c == old.as_ref() => None,
                (Some(c), _) => {
                    inner.caps = Some(c.to_owned());
                    Some(c.to_owned())
                }
                (None, _) => None,
            };
            let mut targets = Vec::with_capacity(inner.clients.len());
            inner.clients.retain_mut(|c| {
                let Some(src) = c.appsrc.upgrade() else {
                    return false;
                };
                let running = absolute.and_then(|abs| client_time(&src, abs, &mut c.shift));
                c.fed |= running.is_some();
                targets.push((src, running, !c.recorder));
                true
            });
            (targets, new_caps)
        };
        for (src, running, counted) in targets {
            if let Some(caps) = &new_caps {
                src.set_caps(Some(caps));
            }
            let Some(running) = running else { continue };
            let mut out = buffer.copy();
            {
                let b = out.make_mut();
                b.set_pts(running);
                b.set_dts(gst::ClockTime::NONE);
            }
            let size = out.size() as u64;
            // Flushing or EOS: the media is going away; it detaches itself.
            if src.push_buffer(out).is_ok() && counted {
                self.sent.fetch_add(size, Ordering::Relaxed);
            }
        }
    }
}

/// RTSP clients, recorders not counted.
fn clients(inner: &Inner) -> usize {
    inner.clients.iter().filter(|c| !c.recorder).count()
}

/// The time of a buffer captured at clock time `absolute` in a client's media, or
/// `None` while that media is not playing (it has no base time to translate into).
fn client_time(
    src: &AppSrc,
    absolute: gst::ClockTime,
    shift: &mut Option<gst::ClockTime>,
) -> Option<gst::ClockTime> {
    if src.current_state() != gst::State::Playing {
        return None;
    }
    let base = src.base_time()?;
    let shift = *shift.get_or_insert_with(|| base.saturating_sub(absolute));
    (absolute + shift).checked_sub(base)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier, Mutex};

    use super::*;

    /// A playing `appsrc ! appsink` and its sink.
    fn recorder_pipeline() -> (gst::Pipeline, AppSrc, gstreamer_app::AppSink) {
        let p = gst::parse::launch(
            "appsrc name=src is-live=true format=time ! appsink name=sink sync=false async=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        p.use_clock(Some(&gst::SystemClock::obtain()));
        let src = p.by_name("src").unwrap().downcast::<AppSrc>().unwrap();
        let sink = p.by_name("sink").unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let _ = p.state(gst::ClockTime::from_mseconds(500));
        (p, src, sink.downcast().unwrap())
    }

    /// The offsets (buffer numbers) a sink got, until 300 ms pass with none.
    fn offsets(sink: &gstreamer_app::AppSink) -> Vec<u64> {
        let mut got = vec![];
        while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_mseconds(300)) {
            got.push(s.buffer().unwrap().offset());
        }
        got
    }

    /// Pushes buffers 0..n (2 ms apart) through `fan` on a thread of its own,
    /// as a capture pipeline's streaming thread would; counts them in `pushed`.
    fn pusher(fan: Arc<Fanout>, n: u64, pushed: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
        let caps = gst::Caps::builder("application/x-hark-test").build();
        let base = gst::SystemClock::obtain().time();
        std::thread::spawn(move || {
            for i in 0..n {
                let mut b = gst::Buffer::with_size(4).unwrap();
                {
                    let b = b.get_mut().unwrap();
                    b.set_pts(gst::ClockTime::from_mseconds(2 * i));
                    b.set_offset(i);
                }
                fan.push(&gst::Sample::builder().buffer(&b).caps(&caps).build(), base);
                pushed.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    }

    /// A segment cut: the next recorder takes the last one's place while
    /// buffers flow; between them they got every buffer once. Taking the last
    /// off and then adding the next once its pipeline has started (what the
    /// recorder did), with buffers pushed meanwhile, loses them: the check
    /// sees it.
    #[test]
    fn a_recorder_swap_loses_and_doubles_nothing() {
        gst::init().unwrap();
        for swap in [true, false] {
            let fan = Arc::new(Fanout::default());
            let (p1, src1, sink1) = recorder_pipeline();
            fan.attach_recorder(1, &src1);
            let pushed = Arc::new(AtomicU64::new(0));
            let push = pusher(fan.clone(), 300, pushed.clone());
            std::thread::sleep(Duration::from_millis(200));
            if swap {
                let (p2, src2, sink2) = recorder_pipeline();
                fan.swap_recorder(1, 2, &src2);
                push.join().unwrap();
                let _ = (src1.end_of_stream(), src2.end_of_stream());
                let mut all = offsets(&sink1);
                let second = offsets(&sink2);
                assert!(
                    !all.is_empty() && !second.is_empty(),
                    "each recorder gets some: {} and {}",
                    all.len(),
                    second.len()
                );
                all.extend(second);
                assert_eq!(all, (0..300).collect::<Vec<u64>>());
                let _ = p2.set_state(gst::State::Null);
            } else {
                fan.detach(1);
                let (p2, src2, sink2) = recorder_pipeline();
                // However slow the machine: buffers were pushed in between.
                let at = pushed.load(Ordering::SeqCst);
                while pushed.load(Ordering::SeqCst) < (at + 3).min(300) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                fan.attach_recorder(2, &src2);
                push.join().unwrap();
                let _ = (src1.end_of_stream(), src2.end_of_stream());
                let mut all = offsets(&sink1);
                all.extend(offsets(&sink2));
                assert!(
                    all.len() < 300,
                    "detach, then attach lost nothing: {}",
                    all.len()
                );
                let _ = p2.set_state(gst::State::Null);
            }
            let _ = p1.set_state(gst::State::Null);
        }
    }

    /// Eight client threads attach at the same moment, round after round (and
    /// detach every other time), each reporting through a sender that may be
    /// preempted (a short sleep): after every round the count reported last
    /// is the count.
    #[test]
    fn the_client_count_reported_last_is_the_count_now() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 50;
        gst::init().unwrap();
        let fan = Arc::new(Fanout::default());
        let last = Arc::new(Mutex::new(None));
        let barrier = Arc::new(Barrier::new(THREADS + 1));
        let store = |last: &Mutex<Option<usize>>, n| {
            std::thread::sleep(Duration::from_micros(50));
            *last.lock().unwrap() = Some(n);
        };
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (fan, last, barrier) = (fan.clone(), last.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let id = t * 1000 + round;
                        let src = gst::ElementFactory::make("appsrc")
                            .build()
                            .unwrap()
                            .downcast::<AppSrc>()
                            .unwrap();
                        barrier.wait();
                        fan.attach(id, &src);
                        fan.report_clients(|n| store(&last, n));
                        if (t + round) % 2 == 0 {
                            fan.detach(id);
                            fan.report_clients(|n| store(&last, n));
                        }
                        barrier.wait();
                    }
                })
            })
            .collect();
        let mut wrong = 0;
        for _ in 0..ROUNDS {
            barrier.wait();
            barrier.wait();
            if *last.lock().unwrap() != Some(clients(&fan.lock())) {
                wrong += 1;
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            wrong, 0,
            "{wrong} of {ROUNDS} rounds ended on a stale count"
        );
        assert_eq!(clients(&fan.lock()), THREADS * ROUNDS / 2);
    }
}

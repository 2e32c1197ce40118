//! Delivery yields to capture: the threads of a pipeline that only delivers
//! (an RTSP client's media, a recording segment, a browser's WebRTC session)
//! run under `SCHED_BATCH`; capture and group threads keep the default policy.
//!
//! Why: a stream's capture thread is the only part of harkd that loses audio
//! when it runs late. Everything downstream of the fan-out merely adds latency.
//! Under Linux's default policy a thread that is woken may preempt the thread
//! that woke it, so every packet the capture thread handed to a client's appsrc
//! could cost it an involuntary context switch: 17 a second per stream at 60 ms
//! frames (one per packet), measured with 16 streams and one client each on 2
//! cores. A woken `SCHED_BATCH` thread never preempts: it runs when the capture
//! thread sleeps or its slice ends, on the same CPU share (the nice level does
//! not change). With it harkd's context switches fell from about 2,240 to about
//! 1,550 a second at 16 streams (`bench/README.md` has the figures).
//!
//! How: a bus sync handler sees each task's stream-status messages on the
//! task's own thread. `Enter` lowers the thread, `Leave` puts it back. That
//! matters because GStreamer's tasks run on pooled threads: a thread that
//! delivered to a client and went back to the pool may next run a capture
//! source, which must find the policy it had. Only a thread under the default
//! policy is lowered: an agent run real-time or idle by its operator keeps
//! that policy on every thread. Threads a task starts inherit
//! its policy (gst-rtsp-server's TCP send thread, which the client's appsrc
//! thread starts, is a delivery thread too).
//!
//! Lowering one's own thread to `SCHED_BATCH` needs no privilege; harkd's
//! systemd unit allows the one system call (`sched_setscheduler`) in its
//! otherwise denied `@resources` set. Where it is refused anyway, harkd says
//! so once and carries on with the default policy.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use gstreamer as gst;
use gstreamer::prelude::*;

/// A thread's scheduling policy, as far as harkd sets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER`: Linux's default; capture runs under it.
    Normal,
    /// `SCHED_BATCH`: never preempts a running thread when woken.
    Batch,
    /// `SCHED_IDLE`: harkd never sets it; an operator may run the agent so.
    Idle,
}

impl Policy {
    fn raw(self) -> libc::c_int {
        match self {
            Policy::Normal => libc::SCHED_OTHER,
            Policy::Batch => libc::SCHED_BATCH,
            Policy::Idle => libc::SCHED_IDLE,
        }
    }
}

/// Sets the calling thread's policy (priority 0, the only one both allow).
#[allow(unsafe_code)]
pub fn set_this_thread(policy: Policy) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is
    // the calling thread (Linux schedules threads, not processes).
    let rc = unsafe { libc::sched_setscheduler(0, policy.raw(), &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's policy, if it is one harkd sets.
#[allow(unsafe_code)]
pub fn this_thread() -> Option<Policy> {
    // SAFETY: no arguments but the calling thread's id 0.
    match unsafe { libc::sched_getscheduler(0) } {
        libc::SCHED_OTHER => Some(Policy::Normal),
        libc::SCHED_BATCH => Some(Policy::Batch),
        libc::SCHED_IDLE => Some(Policy::Idle),
        _ => None,
    }
}

/// Said once per process, not once per client.
static REFUSED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread runs a delivery task that [`enter`] lowered.
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

/// A delivery task starts on this thread: lower it, if it runs the default
/// policy. A thread under any other (the operator ran the agent real-time, or
/// idle) is left as it is, so [`leave`] has nothing to undo.
fn enter() {
    if this_thread() != Some(Policy::Normal) {
        return;
    }
    match set_this_thread(Policy::Batch) {
        Ok(()) => LOWERED.set(true),
        Err(e) => {
            if !REFUSED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    error = %e,
                    "delivery threads keep the default scheduling policy: \
                     sched_setscheduler refused (capture gets no precedence over delivery)"
                );
            }
        }
    }
}

/// The task leaves its (pooled) thread: put back what [`enter`] changed.
fn leave() {
    if LOWERED.replace(false)
        && let Err(e) = set_this_thread(Policy::Normal)
    {
        tracing::warn!(error = %e, "a delivery thread could not be put back to the default policy");
    }
}

/// Makes every task `pipeline` starts a delivery thread (see the module doc).
/// Takes the pipeline bus's sync handler: call it only on pipelines whose bus
/// has none (gst-rtsp-media, the recorder's and WHEP's pipelines watch their
/// bus asynchronously).
pub fn deliver_in_background(pipeline: &gst::Element) {
    let Some(bus) = pipeline.bus() else {
        return;
    };
    bus.set_sync_handler(|_bus, msg| {
        if let gst::MessageView::StreamStatus(s) = msg.view() {
            match s.get().0 {
                gst::StreamStatusType::Enter => enter(),
                gst::StreamStatusType::Leave => leave(),
                _ => {}
            }
        }
        gst::BusSyncReply::Pass
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_lower_itself_and_come_back() {
        std::thread::spawn(|| {
            assert_eq!(this_thread(), Some(Policy::Normal));
            set_this_thread(Policy::Batch).unwrap();
            assert_eq!(this_thread(), Some(Policy::Batch));
            set_this_thread(Policy::Normal).unwrap();
            assert_eq!(this_thread(), Some(Policy::Normal));
        })
        .join()
        .unwrap();
    }

    /// The handler runs on the thread that posts a task's stream status:
    /// `Enter` lowers it, `Leave` restores it (a pooled thread may next run a
    /// capture source); only what it lowered is restored, and a thread under
    /// a policy other than the default is not touched.
    #[test]
    fn enter_lowers_the_posting_thread_and_leave_restores_it() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        deliver_in_background(pipeline.upcast_ref());
        let owner = gst::ElementFactory::make("audiotestsrc").build().unwrap();
        let post = |kind| {
            let m = gst::message::StreamStatus::builder(kind, &owner).build();
            pipeline.bus().unwrap().post(m).unwrap();
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                post(gst::StreamStatusType::Enter);
                assert_eq!(this_thread(), Some(Policy::Batch));
                post(gst::StreamStatusType::Create);
                assert_eq!(this_thread(), Some(Policy::Batch));
                post(gst::StreamStatusType::Leave);
                assert_eq!(this_thread(), Some(Policy::Normal));
                // A Leave with no Enter before it changes nothing.
                set_this_thread(Policy::Batch).unwrap();
                post(gst::StreamStatusType::Leave);
                assert_eq!(this_thread(), Some(Policy::Batch));
            });
            // A thread the operator runs under another policy keeps it.
            s.spawn(|| {
                set_this_thread(Policy::Idle).unwrap();
                post(gst::StreamStatusType::Enter);
                assert_eq!(this_thread(), Some(Policy::Idle));
                post(gst::StreamStatusType::Leave);
                assert_eq!(this_thread(), Some(Policy::Idle));
            });
        });
    }

    /// A real pipeline's streaming thread runs batch; the thread that started
    /// and stopped the pipeline is not touched.
    #[test]
    fn a_pipelines_streaming_thread_runs_batch() {
        use std::sync::{Arc, Mutex};
        gst::init().unwrap();
        let pipeline = gst::parse::launch(
            "audiotestsrc num-buffers=20 name=src ! fakesink name=sink signal-handoffs=true",
        )
        .unwrap();
        deliver_in_background(&pipeline);
        let seen: Arc<Mutex<Vec<Option<Policy>>>> = Arc::default();
        let bin = pipeline.clone().downcast::<gst::Bin>().unwrap();
        let sink = bin.by_name("sink").unwrap();
        let s = seen.clone();
        sink.connect("handoff", false, move |_| {
            s.lock().unwrap().push(this_thread());
            None
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .unwrap();
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        pipeline.set_state(gst::State::Null).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 20);
        assert!(seen.iter().all(|p| *p == Some(Policy::Batch)), "{seen:?}");
        assert_eq!(this_thread(), Some(Policy::Normal));
    }
}

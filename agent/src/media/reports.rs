//! What the media thread tells the supervisor, under a stated policy, so that a
//! busy supervisor can never make the media thread wait or memory grow:
//!
//! - Level readings (4 a second per stream), client counts and recording
//!   status are *state*: the latest value per stream is kept on a board, never
//!   queued. The supervisor reads the board on its tick (levels) or when woken
//!   (the rest).
//! - Failures are *events*: a bounded queue of [`FAILURE_QUEUE`]. When it is
//!   full the failure is dropped, counted and logged; the failed pipeline then
//!   sends no level readings, so the stall timeout restarts it anyway.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, mpsc};

use super::MediaEvent;

/// Failures queued before further ones are dropped.
pub const FAILURE_QUEUE: usize = 256;

#[derive(Default)]
struct Board {
    /// The latest level reading per stream (a `MediaEvent::Level`).
    levels: BTreeMap<String, MediaEvent>,
    /// Client counts that changed since the last read.
    clients: BTreeMap<String, usize>,
    /// Recorders that changed since the last read (`MediaEvent::Recorder`).
    recorders: BTreeMap<String, MediaEvent>,
    /// The latest retention pass (`MediaEvent::RecordingDisk`).
    disk: Option<MediaEvent>,
}

/// The media side's end.
#[derive(Clone)]
pub struct Reports {
    board: Arc<Mutex<Board>>,
    wake: Arc<Notify>,
    failures: mpsc::Sender<MediaEvent>,
    dropped: Arc<AtomicU64>,
}

/// The supervisor's end.
pub struct Inbox {
    board: Arc<Mutex<Board>>,
    wake: Arc<Notify>,
    failures: mpsc::Receiver<MediaEvent>,
    dropped: Arc<AtomicU64>,
}

pub fn channel() -> (Reports, Inbox) {
    let board = Arc::new(Mutex::new(Board::default()));
    let wake = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(FAILURE_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        Reports {
            board: board.clone(),
            wake: wake.clone(),
            failures: tx,
            dropped: dropped.clone(),
        },
        Inbox {
            board,
            wake,
            failures: rx,
            dropped,
        },
    )
}

impl Reports {
    /// Reports without ever blocking (see the module's policy).
    pub fn send(&self, ev: MediaEvent) {
        match ev {
            MediaEvent::Level { ref stream, .. } => {
                let mut b = self.board.lock().unwrap_or_else(PoisonError::into_inner);
                b.levels.insert(stream.clone(), ev);
            }
            MediaEvent::Clients { stream, count } => {
                let mut b = self.board.lock().unwrap_or_else(PoisonError::into_inner);
                b.clients.insert(stream, count);
                drop(b);
                self.wake.notify_one();
            }
            MediaEvent::Recorder { ref stream, .. } => {
                let mut b = self.board.lock().unwrap_or_else(PoisonError::into_inner);
                b.recorders.insert(stream.clone(), ev);
                drop(b);
                self.wake.notify_one();
            }
            MediaEvent::RecordingDisk(_) => {
                let mut b = self.board.lock().unwrap_or_else(PoisonError::into_inner);
                b.disk = Some(ev);
                drop(b);
                self.wake.notify_one();
            }
            MediaEvent::Failed { .. } => {
                if let Err(mpsc::error::TrySendError::Full(ev)) = self.failures.try_send(ev) {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::error!(dropped = n, event = ?ev, "failure queue full; the stall timeout will restart the stream");
                }
            }
        }
    }
}

impl Inbox {
    /// The next failure; `None` once the media side is gone.
    pub async fn failure(&mut self) -> Option<MediaEvent> {
        self.failures.recv().await
    }

    /// What is notified when client counts change.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Takes what the board holds: client counts, and levels when `levels`.
    pub fn take(&self, levels: bool) -> Vec<MediaEvent> {
        let mut b = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<MediaEvent> = std::mem::take(&mut b.clients)
            .into_iter()
            .map(|(stream, count)| MediaEvent::Clients { stream, count })
            .collect();
        out.extend(std::mem::take(&mut b.recorders).into_values());
        out.extend(b.disk.take());
        if levels {
            out.extend(std::mem::take(&mut b.levels).into_values());
        }
        out
    }

    /// Failures dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(stream: &str, rms: f64) -> MediaEvent {
        MediaEvent::Level {
            stream: stream.into(),
            generation: 1,
            peak_dbfs: rms + 3.0,
            rms_dbfs: rms,
            bytes_sent: 0,
            group: None,
        }
    }

    #[test]
    fn levels_are_coalesced_failures_bounded() {
        let (tx, mut rx) = channel();
        for i in 0..1000 {
            tx.send(level("a", -f64::from(i)));
            tx.send(level("b", -1.0));
        }
        let got = rx.take(true);
        assert_eq!(got.len(), 2, "one reading per stream: {got:?}");
        assert!(got.contains(&level("a", -999.0)));
        assert!(rx.take(true).is_empty());
        for g in 0..(FAILURE_QUEUE as u64 + 10) {
            tx.send(MediaEvent::Failed {
                stream: "a".into(),
                generation: g,
                reason: "x".into(),
            });
        }
        assert_eq!(rx.dropped(), 10);
        let mut n = 0;
        while rx.failures.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, FAILURE_QUEUE);
        tx.send(MediaEvent::Clients {
            stream: "a".into(),
            count: 2,
        });
        assert_eq!(
            rx.take(false),
            vec![MediaEvent::Clients {
                stream: "a".into(),
                count: 2
            }]
        );
    }
}

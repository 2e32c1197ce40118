//! systemd integration: `sd_notify` messages (READY, STATUS, RELOADING,
//! STOPPING) and the watchdog.
//!
//! The watchdog is a health check, not a heartbeat: every half interval it asks
//! the supervisor loop and the GStreamer main-context thread to answer a probe,
//! and sends `WATCHDOG=1` only when both answered. A wedged part stops the
//! feeding and systemd kills and restarts the agent. Without `NOTIFY_SOCKET`
//! every call here does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::{mpsc, oneshot, watch};

use crate::media::MediaHandle;
use crate::state::Snapshot;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Start-up has finished: RTSP bound, coldplug done, D-Bus name taken (or its
/// first attempt over: the bus never holds readiness back for long).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A config reload starts; `ready` ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(m) => send(&[NotifyState::Reloading, m]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Keeps `STATUS=` in step with the snapshot: one line, sent when it changes,
/// at most once a second.
pub async fn status_loop(mut snapshots: watch::Receiver<Snapshot>) {
    let mut last = String::new();
    loop {
        let line = snapshots.borrow_and_update().status_line();
        if line != last {
            send(&[NotifyState::Status(&line)]);
            last = line;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// What answered the last probe round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub supervisor: bool,
    pub media: bool,
}

/// One probe round: both parts asked at once, each given `within` to answer.
/// `supervisor` takes probes for the supervisor loop (a full queue is a probe
/// not answered).
pub async fn probe(
    supervisor: &mpsc::Sender<oneshot::Sender<()>>,
    media: &MediaHandle,
    within: Duration,
) -> Probe {
    let (sup_tx, sup_rx) = oneshot::channel();
    let sup_sent = supervisor.try_send(sup_tx).is_ok();
    let media_rx = media.ping();
    let (s, m) = tokio::join!(
        tokio::time::timeout(within, sup_rx),
        tokio::time::timeout(within, media_rx)
    );
    Probe {
        supervisor: sup_sent && matches!(s, Ok(Ok(()))),
        media: matches!(m, Ok(Ok(()))),
    }
}

/// Feeds systemd's watchdog (interval `interval`, from `WATCHDOG_USEC`) for as
/// long as both probes answer. Runs until the daemon ends.
pub async fn watchdog(
    interval: Duration,
    supervisor: mpsc::Sender<oneshot::Sender<()>>,
    media: MediaHandle,
) {
    let half = interval / 2;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "feeding the systemd watchdog while the agent answers"
    );
    let mut was_ok = true;
    loop {
        let round = tokio::time::Instant::now();
        let p = probe(&supervisor, &media, half).await;
        let ok = p.supervisor && p.media;
        if ok {
            send(&[NotifyState::Watchdog]);
            if !was_ok {
                tracing::warn!("the agent answers again; feeding the watchdog");
            }
        } else if was_ok {
            tracing::error!(
                supervisor = p.supervisor,
                media_thread = p.media,
                "part of the agent did not answer within {} ms; not feeding the watchdog",
                half.as_millis()
            );
        }
        was_ok = ok;
        tokio::time::sleep_until(round + half).await;
    }
}

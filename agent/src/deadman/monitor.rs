//! The agent's side of the deadman: it registers each boot in the ledger (so
//! uptime counts), marks the boot good after `good_after` with a stream running,
//! and when no capture stream has run for `unhealthy_after` although capture
//! streams exist (a built-in tone proves nothing about the microphones), it
//! asks the ledger. If a reboot would be allowed, `run` returns and the agent
//! exits with `exit::DEADMAN`, which the unit hands to `harkd deadman decide`
//! (as root). If not, the agent stays up and says why on D-Bus, HTTP and in the
//! journal. It reads the stream snapshot and never touches streams.
//!
//! It runs as a task on the agent's async runtime, so every ledger read and
//! write (and the procfs clock) goes through `off_runtime`: a state directory
//! on a slow SD card delays this loop only, never the runtime (RTSP, HTTP,
//! D-Bus, the watchdog). `HARK_TEST_SLOW_STORE_MS` with `--test-hooks` (see
//! `persist`) makes every write slow, to test exactly that.

use std::mem::discriminant;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::ledger::{Decision, Refusal, human};
use super::{
    DeadmanState, DeadmanStatus, Paths, load_off, mark_good, off_runtime, save_or_log_off, store,
};
use crate::config::DeadmanConfig;
use crate::state::Snapshot;

/// How often a refused reboot is asked again (spacing and cap lift with time).
const RECHECK: Duration = Duration::from_secs(60);
/// How often the ledger is saved just to credit this boot's uptime.
const CREDIT_EVERY: Duration = Duration::from_secs(15 * 60);

/// Runs until the agent should stop for a reboot; returns why. Never returns
/// when the deadman is disabled.
pub async fn run(
    cfg: DeadmanConfig,
    paths: Paths,
    snapshots: watch::Receiver<Snapshot>,
    publish: impl Fn(DeadmanStatus),
) -> String {
    if !cfg.enabled {
        publish(DeadmanStatus::disabled());
        return std::future::pending().await;
    }
    let mut status = register_off(&paths, &cfg).await;
    let mut marked = status.good_boot;
    publish(status.clone());

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy_since: Option<Instant> = None;
    let mut unhealthy_since: Option<Instant> = None;
    let mut next_check = Instant::now();
    let mut next_credit = Instant::now() + CREDIT_EVERY;
    // A good-boot mark that could not be saved is tried again after RECHECK,
    // not every tick (a read-only card would fill the journal).
    let mut next_mark = Instant::now();
    let mut last_refusal: Option<std::mem::Discriminant<Refusal>> = None;
    loop {
        // The first tick fires at once: an agent that starts unhealthy starts
        // counting now.
        tick.tick().await;
        let now = Instant::now();
        let (any_running, capturing, capture_total, summary) = {
            let s = snapshots.borrow();
            let capture = s.streams.iter().filter(|st| st.captures());
            (
                s.streams.iter().any(|st| st.running()),
                capture.clone().filter(|st| st.running()).count(),
                capture.count(),
                s.summary(),
            )
        };
        let mut before = status.clone();
        // A good boot: something runs (the agent works). A reboot is only ever
        // wanted for capture streams that all fail.
        if any_running && (capture_total == 0 || capturing > 0) {
            unhealthy_since = None;
            let since = *healthy_since.get_or_insert(now);
            if !marked && now - since >= cfg.good_after && now >= next_mark {
                let marked_now = {
                    let (p, c) = (paths.clone(), cfg.clone());
                    off_runtime(move || {
                        mark_good(&p, &c).map(|l| (l, super::clock::now(&p.procfs).ok()))
                    })
                    .await
                };
                match marked_now {
                    Ok((l, n)) => {
                        marked = true;
                        last_refusal = None;
                        tracing::info!(
                            healthy_for = %human(cfg.good_after.as_secs()),
                            "deadman: boot marked good"
                        );
                        if let Some(n) = n {
                            status = DeadmanStatus::of(&l, &n, &cfg);
                        }
                    }
                    Err(e) => {
                        next_mark = Instant::now() + RECHECK;
                        tracing::error!(error = %e, "deadman: cannot mark the boot good");
                        status.detail = Some(e.to_string());
                    }
                }
            }
        } else if capture_total > 0 && capturing == 0 {
            healthy_since = None;
            let since = *unhealthy_since.get_or_insert(now);
            if now - since >= cfg.unhealthy_after && now >= next_check {
                next_check = now + RECHECK;
                let reason = format!(
                    "no capture stream running for {} ({summary})",
                    human((now - since).as_secs())
                );
                match load_off(&paths, &cfg).await {
                    Ok((mut l, n)) => match l.decide(&cfg.policy) {
                        Decision::Allow => {
                            tracing::error!(
                                reason,
                                "deadman: the agent cannot work; stopping so the service \
                                 manager's deadman can reboot"
                            );
                            status.state = DeadmanState::Rebooting;
                            publish(status);
                            return reason;
                        }
                        Decision::Refuse(r) => {
                            status = DeadmanStatus::of(&l, &n, &cfg);
                            if !matches!(r, Refusal::Locked { .. }) {
                                status.state = DeadmanState::Refusing;
                            }
                            status.detail = Some(r.to_string());
                            if last_refusal != Some(discriminant(&r)) {
                                last_refusal = Some(discriminant(&r));
                                // Shown at once, before the (perhaps slow)
                                // write that records it; said once recorded.
                                if status != before {
                                    publish(status.clone());
                                    before = status.clone();
                                }
                                l.record_refusal(&n, format!("{reason}: {r}"));
                                let _ = save_or_log_off(&paths.ledger, &l).await;
                                tracing::error!(
                                    reason,
                                    refusal = %r,
                                    "deadman: a reboot is wanted and refused; staying up"
                                );
                            }
                        }
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "deadman");
                        status.state = DeadmanState::Error;
                        status.detail = Some(e.to_string());
                    }
                }
            }
        } else {
            // No capture streams (no mic plugged in), or nothing runs yet while
            // capture works: nothing a reboot could fix.
            healthy_since = None;
            unhealthy_since = None;
        }
        if now >= next_credit {
            next_credit = now + CREDIT_EVERY;
            let _ = register_off(&paths, &cfg).await;
        }
        if status != before {
            publish(status.clone());
        }
    }
}

/// Loads the ledger, brings it up to this boot, and saves it (so this boot's
/// uptime counts for the reboots before it), off the runtime.
async fn register_off(paths: &Paths, cfg: &DeadmanConfig) -> DeadmanStatus {
    let (p, c) = (paths.clone(), cfg.clone());
    off_runtime(move || register(&p, &c)).await
}

fn register(paths: &Paths, cfg: &DeadmanConfig) -> DeadmanStatus {
    match super::load(paths, cfg) {
        Ok((l, now)) => {
            let mut status = DeadmanStatus::of(&l, &now, cfg);
            if let Err(e) = store::save_or_log(&paths.ledger, &l) {
                status.detail = Some(e);
            }
            status
        }
        Err(e) => {
            tracing::error!(error = %e, "deadman");
            DeadmanStatus {
                state: DeadmanState::Error,
                detail: Some(e.to_string()),
                ..DeadmanStatus::of(&Default::default(), &Default::default(), cfg)
            }
        }
    }
}

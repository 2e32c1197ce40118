//! The deadman: the last step of escalation, a reboot, capped by a ledger.
//!
//! Escalation: a stream restarts its own pipeline (media core); the agent exits
//! non-zero when it cannot work and systemd restarts it; when systemd gives up
//! (start limit), or when the agent has had no running stream for
//! `unhealthy_after` although it has streams, `harkd deadman decide` (the unit's
//! `OnFailure=` path, as root) asks the ledger and reboots only if it allows.
//!
//! - `ledger.rs`: the pure type (cap, window, spacing, good-boot mark, lock).
//! - `store.rs`: the file (a `persist::Store`) and its fail-safe recovery
//!   policy (lost, corrupt, unreadable or newer = locked).
//! - `clock.rs`: boot ID and uptime, the only clock decisions use.
//! - `reboot.rs`: the reboot edge (logind, systemctl, a recorder for tests).
//! - `monitor.rs`: the agent's side (marks good boots, spots "no healthy stream").
//!
//! Every file read and write, and the reboot command, runs off the async
//! runtime (`off_runtime`): the agent's runtime must not wait on a slow card.

pub mod clock;
pub mod ledger;
pub mod monitor;
pub mod reboot;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::DeadmanConfig;
use ledger::{Decision, Ledger, Refusal};
use reboot::{RebootError, Rebooter};

pub use crate::state::{DeadmanState, DeadmanStatus};

impl DeadmanStatus {
    /// The status a ledger implies (refusals are added by the caller).
    pub fn of(ledger: &Ledger, now: &ledger::Now, cfg: &DeadmanConfig) -> DeadmanStatus {
        DeadmanStatus {
            enabled: cfg.enabled,
            state: if !cfg.enabled {
                DeadmanState::Disabled
            } else if ledger.locked.is_some() {
                DeadmanState::Locked
            } else {
                DeadmanState::Armed
            },
            reboots_in_window: ledger.in_window(&cfg.policy),
            max_reboots: cfg.policy.max_reboots,
            window_s: cfg.policy.window_s,
            good_boot: ledger.good_this_boot(now),
            detail: ledger.locked.clone(),
        }
    }
}

/// Where the ledger lives and where the clock is read.
#[derive(Debug, Clone)]
pub struct Paths {
    pub ledger: PathBuf,
    pub procfs: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path, procfs: &Path) -> Paths {
        Paths {
            ledger: state_dir.join(store::FILE_NAME),
            procfs: procfs.to_path_buf(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeadmanError {
    #[error(transparent)]
    Clock(#[from] clock::ClockError),
    #[error("{0}")]
    Record(store::StoreError),
    #[error(transparent)]
    Reboot(#[from] RebootError),
}

/// What `decide` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Rebooting,
    Refused(Refusal),
}

/// Runs blocking work (the ledger's file reads, writes and fsyncs, the clock's
/// procfs reads, a reboot command) on tokio's blocking pool, so a state
/// directory on a slow SD card never holds up the async runtime that the
/// agent's other tasks share.
pub(crate) async fn off_runtime<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, and this task with it.
        Err(_) => std::future::pending().await,
    }
}

/// `load` off the runtime.
pub(crate) async fn load_off(
    paths: &Paths,
    cfg: &DeadmanConfig,
) -> Result<(Ledger, ledger::Now), DeadmanError> {
    let (p, c) = (paths.clone(), cfg.clone());
    off_runtime(move || load(&p, &c)).await
}

/// `store::save` off the runtime.
pub(crate) async fn save_off(path: &Path, l: &Ledger) -> Result<(), store::StoreError> {
    let (p, l) = (path.to_path_buf(), l.clone());
    off_runtime(move || store::save(&p, &l)).await
}

/// `store::save_or_log` off the runtime.
pub(crate) async fn save_or_log_off(path: &Path, l: &Ledger) -> Result<(), String> {
    let (p, l) = (path.to_path_buf(), l.clone());
    off_runtime(move || store::save_or_log(&p, &l)).await
}

/// Loads the ledger and brings it up to now. Problems with the file are logged
/// (the ledger then comes back locked). Blocking: see `load_off`.
pub fn load(paths: &Paths, cfg: &DeadmanConfig) -> Result<(Ledger, ledger::Now), DeadmanError> {
    let now = clock::now(&paths.procfs)?;
    let (mut l, problem) = store::load(&paths.ledger, now.wall_unix);
    if let Some(p) = problem {
        tracing::error!(error = %p, "reboot ledger");
    }
    l.observe(&now, &cfg.policy);
    Ok((l, now))
}

/// The `OnFailure=` path: asks the ledger, records the reboot, then requests it.
/// A refusal for spacing waits (when `wait`) until the spacing allows and asks
/// again; a refusal for the cap or a lock is final, recorded and logged. The
/// file I/O runs off the async runtime.
pub async fn decide(
    paths: &Paths,
    cfg: &DeadmanConfig,
    reason: &str,
    rebooter: &impl Rebooter,
    wait: bool,
) -> Result<Outcome, DeadmanError> {
    loop {
        let (mut l, now) = load_off(paths, cfg).await?;
        match l.decide(&cfg.policy) {
            Decision::Allow => {
                // Recorded (durably) before it is requested: a reboot that
                // cannot be recorded is not done.
                l.record_reboot(&now, reason);
                if let Err(e) = save_off(&paths.ledger, &l).await {
                    tracing::error!(
                        error = %e,
                        "deadman: not rebooting, since a reboot that is not recorded is not capped"
                    );
                    return Err(DeadmanError::Record(e));
                }
                tracing::warn!(
                    reason,
                    reboots_in_window = l.in_window(&cfg.policy),
                    max = cfg.policy.max_reboots,
                    "deadman: rebooting"
                );
                rebooter.reboot(reason).await?;
                return Ok(Outcome::Rebooting);
            }
            Decision::Refuse(Refusal::Spacing { wait_s, .. })
                if wait && wait_s <= cfg.policy.min_spacing_s =>
            {
                tracing::warn!(
                    reason,
                    wait = %ledger::human(wait_s),
                    "deadman: too soon after the last reboot; waiting to ask again"
                );
                // Save the boot just seen so its uptime counts, then wait.
                let _ = save_or_log_off(&paths.ledger, &l).await;
                tokio::time::sleep(Duration::from_secs(wait_s + 1)).await;
            }
            Decision::Refuse(r) => {
                tracing::error!(
                    reason,
                    refusal = %r,
                    "deadman: reboot refused; the board stays up for diagnosis"
                );
                l.record_refusal(&now, format!("{reason}: {r}"));
                let _ = save_or_log_off(&paths.ledger, &l).await;
                return Ok(Outcome::Refused(r));
            }
        }
    }
}

/// Marks this boot good (unlocks a lost or corrupt ledger). Blocking.
pub fn mark_good(paths: &Paths, cfg: &DeadmanConfig) -> Result<Ledger, DeadmanError> {
    let (mut l, now) = load(paths, cfg)?;
    l.mark_good(&now);
    store::save(&paths.ledger, &l).map_err(DeadmanError::Record)?;
    Ok(l)
}

/// Forgets every reboot and refusal and unlocks (an operator's decision).
/// Blocking.
pub fn reset(paths: &Paths, cfg: &DeadmanConfig) -> Result<Ledger, DeadmanError> {
    let (mut l, _) = load(paths, cfg)?;
    l.reset();
    store::save(&paths.ledger, &l).map_err(DeadmanError::Record)?;
    Ok(l)
}

/// A report for `harkd deadman status`: the ledger as it stands, changing nothing.
pub fn report(paths: &Paths, cfg: &DeadmanConfig) -> Result<String, DeadmanError> {
    use std::fmt::Write;
    let now = clock::now(&paths.procfs)?;
    let mut out = String::new();
    let (mut l, problem) = store::peek(&paths.ledger);
    l.observe(&now, &cfg.policy);
    let p = &cfg.policy;
    let _ = writeln!(out, "ledger: {}", paths.ledger.display());
    if let Some(p) = problem {
        let _ = writeln!(out, "problem: {p}");
    }
    let _ = writeln!(
        out,
        "deadman: {}",
        if cfg.enabled {
            "enabled"
        } else {
            "disabled in the config"
        }
    );
    let _ = writeln!(
        out,
        "policy: at most {} reboots in {}, at least {} apart",
        p.max_reboots,
        ledger::human(p.window_s),
        ledger::human(p.min_spacing_s)
    );
    let _ = writeln!(
        out,
        "this boot: {} (up {})",
        now.boot_id,
        ledger::human(now.uptime_s)
    );
    let _ = writeln!(
        out,
        "good boot: {}",
        match &l.last_good {
            Some(m) if m.boot_id == now.boot_id => "this boot".to_string(),
            Some(m) => format!(
                "boot {} (at {} of uptime)",
                m.boot_id,
                ledger::human(m.uptime_s)
            ),
            None => "none marked".to_string(),
        }
    );
    let _ = writeln!(out, "reboots in window: {}", l.in_window(p));
    for r in &l.reboots {
        let _ = writeln!(
            out,
            "  {} ago (counted in uptime): {}",
            ledger::human(l.since(r)),
            r.reason
        );
    }
    if let Some(m) = &l.last_refusal {
        let _ = writeln!(out, "last refusal: {}", m.note);
    }
    let _ = writeln!(
        out,
        "a reboot now: {}",
        match l.decide(p) {
            Decision::Allow => "allowed".to_string(),
            Decision::Refuse(r) => format!("refused: {r}"),
        }
    );
    Ok(out)
}

#[cfg(test)]
mod simulation {
    //! 1,000 boots with random failures, power cuts, torn writes, corrupt files
    //! and a wall clock that jumps: the reboots the deadman asks for never exceed
    //! the cap in any window of real time, and it still reboots when it may.

    use super::ledger::{Decision, Now, Policy};
    use super::store;

    const P: Policy = Policy {
        max_reboots: 3,
        window_s: 86_400,
        min_spacing_s: 1800,
    };

    struct Disk {
        path: std::path::PathBuf,
    }

    impl Disk {
        /// A save that a power cut may interrupt (the temp file is left torn and
        /// the rename never happens) or that a failing card may corrupt later.
        fn save(&self, l: &super::Ledger, rng: &mut fastrand::Rng) -> bool {
            if rng.u32(..100) < 3 {
                let bytes = store::render(l);
                let cut = rng.usize(..bytes.len());
                std::fs::write(crate::persist::temp_path(&self.path), &bytes[..cut]).unwrap();
                return false;
            }
            store::save(&self.path, l).is_ok()
        }
    }

    fn run(seed: u64) -> (usize, usize) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk {
            path: dir.path().join(store::FILE_NAME),
        };
        let mut true_time: u64 = 0;
        let mut reboots_at: Vec<u64> = vec![];
        let mut losses: Vec<u64> = vec![];
        let mut goods: Vec<u64> = vec![];
        for boot in 0..1000u32 {
            let boot_id = format!("{boot:08x}-0000-4000-8000-000000000000");
            // No RTC: the wall clock starts wherever (1970, an old save, the future).
            let wall_offset = match rng.u8(..4) {
                0 => 0,
                1 => true_time.saturating_sub(rng.u64(..10 * 86_400)),
                2 => true_time + rng.u64(..365 * 86_400),
                _ => 1_700_000_000,
            };
            let now = |up: u64| Now {
                boot_id: boot_id.clone(),
                uptime_s: up,
                wall_unix: wall_offset + up,
            };
            // Sometimes the card loses or mangles the file between boots.
            if rng.u32(..100) < 2 {
                losses.push(true_time);
                if rng.bool() {
                    let _ = std::fs::remove_file(&disk.path);
                } else if let Ok(b) = std::fs::read(&disk.path) {
                    std::fs::write(&disk.path, &b[..b.len() / 3]).unwrap();
                }
            }
            // This boot: broken (wants a reboot after a while, asks every
            // 5 minutes), or healthy (marked good after 10 min); and a power cut or
            // a person may end it at any time.
            let broken = rng.u32(..100) < 60;
            let wants_after = rng.u64(60..2 * 3600);
            let ends_at = rng.u64(300..30 * 3600);
            let mut up = 0;
            let mut marked = false;
            let mut rebooted = false;
            while up < ends_at && !rebooted {
                up += 300;
                let (mut l, _) = store::load(&disk.path, wall_offset + up);
                l.observe(&now(up), &P);
                if !broken && !marked && up >= 600 {
                    l.mark_good(&now(up));
                    marked = disk.save(&l, &mut rng);
                    if marked {
                        goods.push(true_time + up);
                    }
                } else if broken && up >= wants_after {
                    if l.decide(&P) == Decision::Allow {
                        l.record_reboot(&now(up), "sim");
                        // Recorded before requested: no record, no reboot.
                        if disk.save(&l, &mut rng) {
                            reboots_at.push(true_time + up);
                            rebooted = true;
                        }
                    }
                } else if up % (3 * 3600) == 0 {
                    disk.save(&l, &mut rng);
                }
            }
            // Up, then off for a while (the ledger never sees this time).
            true_time += up + rng.u64(10..4 * 3600);
        }
        for (i, t) in reboots_at.iter().enumerate() {
            let window: Vec<u64> = reboots_at[i..]
                .iter()
                .copied()
                .take_while(|u| *u < t + P.window_s)
                .collect();
            // A lost ledger forgets what it held: the cap holds between losses,
            // and a loss can only add reboots after a good boot unlocked it.
            let last = window[window.len() - 1];
            let lost = losses.iter().filter(|l| (*t..=last).contains(*l)).count();
            assert!(
                window.len() <= P.max_reboots as usize * (1 + lost),
                "seed {seed}: {} reboots within 24 h from t={t}, {lost} losses",
                window.len()
            );
            if i > 0 {
                let prev = reboots_at[i - 1];
                let lost_between = losses.iter().any(|l| (prev..=*t).contains(l));
                assert!(
                    lost_between || t - prev >= P.min_spacing_s,
                    "seed {seed}: reboots {} s apart",
                    t - prev
                );
            }
            // Fail safe: after a loss, no reboot before a good boot is marked.
            if let Some(loss) = losses.iter().rev().find(|l| **l <= *t) {
                assert!(
                    goods.iter().any(|g| (*loss..*t).contains(g)),
                    "seed {seed}: a reboot at t={t} after the ledger was lost at t={loss} \
                     with no good boot between"
                );
            }
        }
        (reboots_at.len(), losses.len())
    }

    #[test]
    fn a_thousand_boots_never_exceed_the_cap() {
        let mut total = 0;
        for seed in 1..=5 {
            let (reboots, corruptions) = run(seed);
            // Not vacuous: the deadman did reboot, many times, and the files
            // were damaged along the way.
            assert!(reboots >= 50, "seed {seed}: only {reboots} reboots");
            assert!(corruptions > 5, "seed {seed}: {corruptions} corruptions");
            total += reboots;
        }
        assert!(total > 0);
    }
}

//! The reboot ledger, a pure type: the reboots the deadman asked for, how much
//! time has provably passed since each, and whether this board has had a good
//! boot. No I/O here: `store.rs` reads and writes it, and callers pass the clock in.
//!
//! Time. Boards without an RTC boot with a wall clock that lies (1970, or the last
//! fake-hwclock save) until NTP corrects it, in either direction. Decisions
//! therefore never use the wall clock: elapsed time is counted from the kernel's
//! boot ID and uptime. The time since a reboot is at least what was left of the
//! boot that asked for it, plus the uptime seen of every boot since, plus the
//! uptime now. Power-off time is not counted, so the estimate is a lower bound:
//! a reboot is forgotten later than it could be, never sooner (a clock jump can
//! neither unlock extra reboots nor, since uptime always grows, lock the ledger
//! forever). The wall clock is recorded for people reading the file.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The limits, from `[deadman]` in the config.
pub use crate::config::RebootPolicy as Policy;

/// How far a recorded uptime of this boot may be ahead of the kernel's and still
/// be believed (readers a moment apart); beyond it, the file is wrong.
const UPTIME_SLACK_S: u64 = 60;

/// The clock as the kernel tells it: which boot this is and how long it has run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Now {
    /// `/proc/sys/kernel/random/boot_id`: new on every boot.
    pub boot_id: String,
    /// Seconds since boot (`/proc/uptime`), monotonic within a boot.
    pub uptime_s: u64,
    /// Wall clock (Unix seconds), recorded for people only.
    pub wall_unix: u64,
}

/// A reboot the deadman asked for (recorded before it was requested).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reboot {
    /// The boot that asked for it.
    pub boot_id: String,
    /// That boot's uptime when it asked.
    pub at_uptime_s: u64,
    /// Uptime counted since the request in boots that have ended.
    pub credited_s: u64,
    pub reason: String,
    pub wall_unix: u64,
}

/// The last boot seen, and the largest uptime seen in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSeen {
    pub boot_id: String,
    pub uptime_s: u64,
}

/// A moment in a boot: when it was marked good, or when a reboot was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub boot_id: String,
    pub uptime_s: u64,
    pub wall_unix: u64,
    /// Why (empty for a good-boot mark).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub current: Option<BootSeen>,
    /// Reboots still inside the window (or the spacing), oldest first.
    pub reboots: Vec<Reboot>,
    pub last_good: Option<Mark>,
    /// Set when the ledger was lost or unreadable: no reboot until a good boot.
    pub locked: Option<String>,
    pub last_refusal: Option<Mark>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Refuse(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The ledger was lost or unreadable; no reboot until a good boot is marked.
    Locked { reason: String },
    /// The cap is reached; the oldest counted reboot leaves the window in `free_in_s`.
    Cap {
        count: u32,
        max: u32,
        window_s: u64,
        free_in_s: u64,
    },
    /// The last reboot was `since_s` ago; the next is allowed in `wait_s`.
    Spacing { since_s: u64, wait_s: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Locked { reason } => write!(
                f,
                "reboots are locked until a good boot is marked: {reason}"
            ),
            Refusal::Cap {
                count,
                max,
                window_s,
                free_in_s,
            } => write!(
                f,
                "{count} of {max} reboots already used in the last {} (counted in uptime); \
                 the next is allowed in {} at the earliest",
                human(*window_s),
                human(*free_in_s)
            ),
            Refusal::Spacing { since_s, wait_s } => write!(
                f,
                "the last reboot was {} ago; the next is allowed in {}",
                human(*since_s),
                human(*wait_s)
            ),
        }
    }
}

/// `5400` -> "1h30m", `45` -> "45s".
pub fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

impl Ledger {
    /// A ledger that allows no reboot until a good boot is marked.
    pub fn locked(reason: impl Into<String>) -> Ledger {
        Ledger {
            locked: Some(reason.into()),
            ..Ledger::default()
        }
    }

    /// Brings the ledger up to `now`. A new boot ID closes the previous boot:
    /// its last seen uptime is credited to every earlier reboot.
    pub fn observe(&mut self, now: &Now, policy: &Policy) {
        match &mut self.current {
            // Never moved back (two readers of one boot may observe a moment
            // apart), but never beyond the kernel's uptime by more than that
            // moment either: a recorded uptime far ahead of it is a damaged file,
            // and believing it made a reboot recorded now look hours old, dropped
            // at once from the count (found by fuzzing: no cap at all).
            Some(c) if c.boot_id == now.boot_id => {
                c.uptime_s = if c.uptime_s > now.uptime_s.saturating_add(UPTIME_SLACK_S) {
                    now.uptime_s
                } else {
                    c.uptime_s.max(now.uptime_s)
                };
            }
            _ => {
                if let Some(prev) = self.current.take() {
                    for r in &mut self.reboots {
                        r.credited_s = if r.boot_id == prev.boot_id {
                            prev.uptime_s.saturating_sub(r.at_uptime_s)
                        } else {
                            r.credited_s.saturating_add(prev.uptime_s)
                        };
                    }
                }
                self.current = Some(BootSeen {
                    boot_id: now.boot_id.clone(),
                    uptime_s: now.uptime_s,
                });
            }
        }
        // Reboots that can no longer count against the cap or the spacing.
        let keep = policy.window_s.max(policy.min_spacing_s);
        let current = self.current.clone();
        self.reboots.retain(|r| since(r, current.as_ref()) < keep);
    }

    /// Counted seconds since `r` was requested (call `observe` first).
    pub fn since(&self, r: &Reboot) -> u64 {
        since(r, self.current.as_ref())
    }

    /// Reboots inside the window.
    pub fn in_window(&self, policy: &Policy) -> u32 {
        let n = self
            .reboots
            .iter()
            .filter(|r| self.since(r) < policy.window_s)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// May the deadman reboot now? (Call `observe` first.)
    pub fn decide(&self, policy: &Policy) -> Decision {
        if let Some(reason) = &self.locked {
            return Decision::Refuse(Refusal::Locked {
                reason: reason.clone(),
            });
        }
        let count = self.in_window(policy);
        if count >= policy.max_reboots {
            let oldest = self
                .reboots
                .iter()
                .map(|r| self.since(r))
                .filter(|s| *s < policy.window_s)
                .max()
                .unwrap_or(0);
            return Decision::Refuse(Refusal::Cap {
                count,
                max: policy.max_reboots,
                window_s: policy.window_s,
                free_in_s: policy.window_s - oldest,
            });
        }
        if let Some(last) = self.reboots.iter().map(|r| self.since(r)).min()
            && last < policy.min_spacing_s
        {
            return Decision::Refuse(Refusal::Spacing {
                since_s: last,
                wait_s: policy.min_spacing_s - last,
            });
        }
        Decision::Allow
    }

    /// Records a reboot about to be requested (before it is).
    pub fn record_reboot(&mut self, now: &Now, reason: &str) {
        self.reboots.push(Reboot {
            boot_id: now.boot_id.clone(),
            at_uptime_s: now.uptime_s,
            credited_s: 0,
            reason: reason.to_string(),
            wall_unix: now.wall_unix,
        });
    }

    pub fn record_refusal(&mut self, now: &Now, note: String) {
        self.last_refusal = Some(mark(now, note));
    }

    /// This boot has been healthy: it unlocks a lost or corrupt ledger.
    pub fn mark_good(&mut self, now: &Now) {
        self.last_good = Some(mark(now, String::new()));
        self.locked = None;
    }

    /// Was the boot `now` is in marked good?
    pub fn good_this_boot(&self, now: &Now) -> bool {
        self.last_good
            .as_ref()
            .is_some_and(|m| m.boot_id == now.boot_id)
    }

    /// Forgets every reboot and refusal, and unlocks (an operator's decision).
    pub fn reset(&mut self) {
        self.reboots.clear();
        self.locked = None;
        self.last_refusal = None;
    }
}

fn since(r: &Reboot, current: Option<&BootSeen>) -> u64 {
    match current {
        Some(c) if c.boot_id == r.boot_id => c.uptime_s.saturating_sub(r.at_uptime_s),
        Some(c) => r.credited_s.saturating_add(c.uptime_s),
        None => r.credited_s,
    }
}

fn mark(now: &Now, note: String) -> Mark {
    Mark {
        boot_id: now.boot_id.clone(),
        uptime_s: now.uptime_s,
        wall_unix: now.wall_unix,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        max_reboots: 3,
        window_s: 24 * 3600,
        min_spacing_s: 1800,
    };
    const MIN: u64 = 60;
    const HOUR: u64 = 3600;

    fn at(boot: &str, uptime_s: u64) -> Now {
        Now {
            boot_id: boot.into(),
            uptime_s,
            wall_unix: 1_700_000_000 + uptime_s,
        }
    }

    /// Observes `now`, decides, and records the reboot when allowed.
    fn try_reboot(l: &mut Ledger, now: &Now) -> Decision {
        l.observe(now, &P);
        let d = l.decide(&P);
        if d == Decision::Allow {
            l.record_reboot(now, "test");
        }
        d
    }

    fn unlocked() -> Ledger {
        Ledger::default()
    }

    #[test]
    fn human_durations() {
        for (s, want) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (90, "1m30s"),
            (3600, "1h"),
            (5400, "1h30m"),
            (86400, "24h"),
        ] {
            assert_eq!(human(s), want);
        }
    }

    #[test]
    fn cap_spacing_and_window_table() {
        // (step, boot, uptime at the request, expected decision kind)
        // Each boot lives 40 minutes before asking: spacing (30 min) holds.
        let mut l = unlocked();
        let steps: &[(&str, u64, &str)] = &[
            ("b1", 40 * MIN, "allow"),
            ("b2", 40 * MIN, "allow"),
            ("b3", 40 * MIN, "allow"),
            // Three in the window: the cap refuses however long this boot has run
            // (until the window has passed).
            ("b4", 40 * MIN, "cap"),
            ("b4", 20 * HOUR, "cap"),
            // b1's reboot was asked at 40 min of b1: counted since = b2 + b3 + b4
            // uptimes = 40 + 40 + 22h40 > 24 h once b4 has run 22 h 41 min.
            ("b4", 22 * HOUR + 41 * MIN, "allow"),
            // b2's reboot leaves the window once b5 has run 39 min.
            ("b5", 10 * MIN, "cap"),
            ("b5", 40 * MIN, "allow"),
            ("b6", 10 * MIN, "cap"),
        ];
        for (i, (boot, up, want)) in steps.iter().enumerate() {
            let d = try_reboot(&mut l, &at(boot, *up));
            let got = match d {
                Decision::Allow => "allow",
                Decision::Refuse(Refusal::Cap { .. }) => "cap",
                Decision::Refuse(Refusal::Spacing { .. }) => "spacing",
                Decision::Refuse(Refusal::Locked { .. }) => "locked",
            };
            assert_eq!(got, *want, "step {i}: {boot} at {up} s: {d:?}");
        }
    }

    #[test]
    fn spacing_counts_from_the_request_and_says_how_long_to_wait() {
        let mut l = unlocked();
        assert_eq!(try_reboot(&mut l, &at("a", 100)), Decision::Allow);
        // The next boot, 5 minutes in: 5 min counted since the request (the
        // rest of boot a after the request was not seen: counted as zero).
        l.observe(&at("b", 5 * MIN), &P);
        assert_eq!(
            l.decide(&P),
            Decision::Refuse(Refusal::Spacing {
                since_s: 5 * MIN,
                wait_s: 25 * MIN
            })
        );
        // 30 minutes of counted time later: allowed.
        l.observe(&at("b", 30 * MIN), &P);
        assert_eq!(l.decide(&P), Decision::Allow);
    }

    #[test]
    fn cap_reports_when_the_oldest_reboot_leaves_the_window() {
        let mut l = unlocked();
        for b in ["a", "b", "c"] {
            assert_eq!(try_reboot(&mut l, &at(b, HOUR)), Decision::Allow);
        }
        l.observe(&at("d", HOUR), &P);
        // a's reboot: b + c + d = 3 h counted.
        assert_eq!(
            l.decide(&P),
            Decision::Refuse(Refusal::Cap {
                count: 3,
                max: 3,
                window_s: 24 * HOUR,
                free_in_s: 21 * HOUR
            })
        );
        let text = match l.decide(&P) {
            Decision::Refuse(r) => r.to_string(),
            Decision::Allow => unreachable!(),
        };
        assert_eq!(
            text,
            "3 of 3 reboots already used in the last 24h (counted in uptime); \
             the next is allowed in 21h at the earliest"
        );
    }

    #[test]
    fn a_locked_ledger_refuses_until_a_good_boot_is_marked() {
        let mut l = Ledger::locked("the file was lost");
        l.observe(&at("a", 50 * HOUR), &P);
        assert!(matches!(
            l.decide(&P),
            Decision::Refuse(Refusal::Locked { .. })
        ));
        assert!(!l.good_this_boot(&at("a", 50 * HOUR)));
        l.mark_good(&at("a", 50 * HOUR));
        assert!(l.good_this_boot(&at("a", 51 * HOUR)));
        assert!(!l.good_this_boot(&at("b", 1)));
        assert_eq!(l.decide(&P), Decision::Allow);
        // Marking good does not forget reboots: the cap still holds.
        for b in ["b", "c", "d"] {
            assert_eq!(try_reboot(&mut l, &at(b, HOUR)), Decision::Allow);
            l.mark_good(&at(b, HOUR));
        }
        assert!(matches!(
            try_reboot(&mut l, &at("e", HOUR)),
            Decision::Refuse(Refusal::Cap { .. })
        ));
        // An operator's reset does.
        l.reset();
        assert_eq!(try_reboot(&mut l, &at("e", HOUR)), Decision::Allow);
    }

    #[test]
    fn wall_clock_jumps_change_nothing() {
        // The same boots and uptimes with the wall clock jumping a year forward,
        // back to 1970, and to the far future: the same decisions every time.
        let jumps: [fn(u64) -> u64; 4] = [
            |u| 1_700_000_000 + u,
            |u| 1_700_000_000 + 365 * 86_400 + u,
            |u| u,
            |u| u64::MAX - 10 * 86_400 + u,
        ];
        let mut outcomes = vec![];
        for wall in jumps {
            let mut l = unlocked();
            let mut got = vec![];
            for (boot, up) in [("a", 2 * HOUR), ("b", HOUR), ("c", HOUR), ("d", HOUR)] {
                let now = Now {
                    boot_id: boot.into(),
                    uptime_s: up,
                    wall_unix: wall(up),
                };
                got.push(try_reboot(&mut l, &now));
            }
            outcomes.push(got);
        }
        assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
        assert!(matches!(
            outcomes[0][3],
            Decision::Refuse(Refusal::Cap { .. })
        ));
    }

    #[test]
    fn the_cap_always_lifts_once_enough_uptime_has_passed() {
        // Whatever the wall clock did, uptime grows: a board at the cap that stays
        // up gets its reboots back after the window, never locked forever.
        let mut l = unlocked();
        for b in ["a", "b", "c"] {
            try_reboot(&mut l, &at(b, 40 * MIN));
        }
        // a's reboot: 40 + 40 min of b and c, plus d's uptime.
        l.observe(&at("d", 22 * HOUR), &P);
        assert!(matches!(
            l.decide(&P),
            Decision::Refuse(Refusal::Cap { .. })
        ));
        l.observe(&at("d", 22 * HOUR + 40 * MIN), &P);
        assert_eq!(l.decide(&P), Decision::Allow);
        // Old reboots are pruned once they cannot count any more (c's after
        // 24 h of d).
        l.observe(&at("d", 24 * HOUR), &P);
        assert!(l.reboots.is_empty(), "{:?}", l.reboots);
    }

    #[test]
    fn boots_the_agent_never_saw_count_as_no_time() {
        // Reboots in boots a, b, c; then boots x, y where harkd never ran (not
        // observed); then boot d, 2 h in. Only a's leftover (0), b, c and d's
        // uptime count: 40 + 40 + 120 min. Still capped: unknown time is not time.
        let mut l = unlocked();
        for b in ["a", "b", "c"] {
            try_reboot(&mut l, &at(b, 40 * MIN));
        }
        l.observe(&at("d", 2 * HOUR), &P);
        assert_eq!(l.in_window(&P), 3);
        assert!(l.since(&l.reboots[0]) == 200 * MIN);
    }

    #[test]
    fn observing_the_same_boot_again_never_moves_time_back() {
        let mut l = unlocked();
        try_reboot(&mut l, &at("a", HOUR));
        l.observe(&at("b", 20 * MIN), &P);
        l.observe(&at("b", 20 * MIN - 30), &P);
        assert_eq!(l.since(&l.reboots[0]), 20 * MIN);
    }

    /// A file claiming this boot has run far longer than the kernel says would
    /// make a reboot recorded now count as long past: it is not believed.
    #[test]
    fn a_recorded_uptime_far_ahead_of_the_kernels_is_not_believed() {
        let mut l = unlocked();
        l.observe(&at("b", 10 * MIN), &P);
        l.current.as_mut().unwrap().uptime_s = u64::MAX;
        let now = at("b", 10 * MIN);
        l.observe(&now, &P);
        assert_eq!(l.current.as_ref().unwrap().uptime_s, 10 * MIN);
        assert_eq!(l.decide(&P), Decision::Allow);
        l.record_reboot(&now, "test");
        l.observe(&now, &P);
        assert_eq!(l.reboots.len(), 1, "the reboot just recorded is counted");
        assert!(matches!(
            l.decide(&P),
            Decision::Refuse(Refusal::Spacing { .. })
        ));
    }
}

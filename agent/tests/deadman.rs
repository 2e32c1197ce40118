//! The deadman against the real binary: `harkd deadman decide|status|mark-good|
//! reset` played through whole boot sequences (boot ID and uptime come from a
//! fixture procfs, the reboot is recorded in a file instead of done), and the
//! agent's own side: a good boot marked after a healthy period, and "no stream
//! can run" turned into exit 4 when the ledger allows, or a refusal shown on
//! HTTP when it does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{HARKD, Harkd, msg};

/// A board: a state directory, a config, a procfs with a boot ID and uptime,
/// and the file the recorded reboots go to.
struct Board {
    dir: tempfile::TempDir,
}

impl Board {
    fn new(deadman: &str) -> Board {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel/random")).unwrap();
        let b = Board { dir };
        b.write_config(deadman);
        b.boot(1, 10);
        b
    }

    fn write_config(&self, deadman: &str) {
        std::fs::write(
            self.config(),
            format!(
                "[devices]\nenabled = false\nstate_dir = \"{}\"\n\n[deadman]\n{deadman}\n",
                self.state().display()
            ),
        )
        .unwrap();
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("hark.toml")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn ledger(&self) -> PathBuf {
        self.state().join("reboots.json")
    }
    fn procfs(&self) -> PathBuf {
        self.dir.path().join("proc")
    }
    fn reboots_file(&self) -> PathBuf {
        self.dir.path().join("reboots-requested")
    }

    /// The board is in boot `n`, up `uptime_s`.
    fn boot(&self, n: u32, uptime_s: u64) {
        std::fs::write(
            self.procfs().join("sys/kernel/random/boot_id"),
            format!("{n:08x}-1111-4222-8333-444444444444\n"),
        )
        .unwrap();
        std::fs::write(self.procfs().join("uptime"), format!("{uptime_s}.25 1.0\n")).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HARKD);
        c.arg("deadman")
            .args(args)
            .arg("--config")
            .arg(self.config())
            .arg("--procfs-root")
            .arg(self.procfs())
            .env_remove("MONITOR_EXIT_STATUS")
            .env_remove("MONITOR_SERVICE_RESULT")
            .env("HARK_LOG", "warn");
        c
    }

    fn run(&self, args: &[&str]) -> (String, Output) {
        let out = self.cmd(args).output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), out)
    }

    /// `decide --no-wait`, recording instead of rebooting; returns stdout.
    fn decide(&self) -> String {
        let file = self.reboots_file();
        let (text, out) = self.run(&[
            "decide",
            "--no-wait",
            "--reason",
            "test",
            "--record-reboot",
            file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn reboots_recorded(&self) -> usize {
        std::fs::read_to_string(self.reboots_file())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

const POLICY: &str = "enabled = true\nmax_reboots = 2\nwindow_s = 3600\nmin_spacing_s = 600";

#[test]
fn decide_follows_the_ledger_through_boots() {
    let b = Board::new(POLICY);
    // No ledger yet: locked until a good boot (a lost file must not allow reboots).
    let out = b.decide();
    assert!(
        out.starts_with("reboot refused: reboots are locked"),
        "{out}"
    );
    assert_eq!(b.reboots_recorded(), 0);
    assert!(b.ledger().exists(), "the locked ledger is saved");

    let (out, st) = b.run(&["mark-good"]);
    assert!(st.status.success() && out.contains("marked good"), "{out}");
    assert_eq!(b.decide(), "rebooting: test\n");
    assert_eq!(b.reboots_recorded(), 1);

    // Boot 2, 100 s in: too soon (spacing 600 s).
    b.boot(2, 100);
    let out = b.decide();
    assert!(
        out.contains("the last reboot was 1m40s ago; the next is allowed in 8m20s"),
        "{out}"
    );
    b.boot(2, 700);
    assert_eq!(b.decide(), "rebooting: test\n");
    assert_eq!(b.reboots_recorded(), 2);

    // Boot 3: the cap (2 in an hour of uptime).
    b.boot(3, 700);
    let out = b.decide();
    assert!(out.contains("2 of 2 reboots already used"), "{out}");
    assert_eq!(b.reboots_recorded(), 2);
    let (status, _) = b.run(&["status"]);
    assert!(status.contains("reboots in window: 2"), "{status}");
    assert!(
        status.contains("last refusal: test: 2 of 2 reboots"),
        "{status}"
    );
    assert!(status.contains("a reboot now: refused"), "{status}");

    // The wall clock plays no part; uptime does: 700 s of boot 3 plus 700 s of
    // boot 2 since the first reboot; at 2,900 s of boot 3 the first leaves the hour.
    b.boot(3, 2900);
    assert_eq!(b.decide(), "rebooting: test\n");
    assert_eq!(b.reboots_recorded(), 3);

    // An operator's reset forgets; status says a reboot would be allowed.
    b.boot(4, 5);
    let (out, _) = b.run(&["reset"]);
    assert!(out.contains("reset"), "{out}");
    let (status, _) = b.run(&["status"]);
    assert!(status.contains("reboots in window: 0"), "{status}");
    assert!(status.contains("a reboot now: allowed"), "{status}");
}

#[test]
fn a_corrupt_ledger_is_kept_aside_and_locks() {
    let b = Board::new(POLICY);
    b.run(&["mark-good"]);
    std::fs::write(b.ledger(), b"{\"version\": 1, \"reboots\": [tru").unwrap();
    // status reports without touching the file.
    let (status, _) = b.run(&["status"]);
    assert!(status.contains("problem:"), "{status}");
    assert!(b.ledger().exists());
    let out = b.decide();
    assert!(out.contains("reboot refused: reboots are locked"), "{out}");
    let kept: Vec<_> = std::fs::read_dir(b.state())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("reboots.json.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the bad file is kept aside");
    assert_eq!(b.reboots_recorded(), 0);
    // A good boot unlocks.
    b.run(&["mark-good"]);
    assert_eq!(b.decide(), "rebooting: test\n");
}

#[test]
fn no_reboot_for_a_bad_config_or_when_disabled() {
    let b = Board::new(POLICY);
    let file = b.reboots_file().display().to_string();
    b.run(&["mark-good"]);
    let out = b
        .cmd(&["decide", "--no-wait", "--record-reboot", &file])
        .env("MONITOR_SERVICE_RESULT", "exit-code")
        .env("MONITOR_EXIT_STATUS", "3")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("configuration error"), "{text}");
    assert_eq!(b.reboots_recorded(), 0);

    // The reason comes from systemd's variables.
    let out = b
        .cmd(&["decide", "--no-wait", "--record-reboot", &file])
        .env("MONITOR_SERVICE_RESULT", "start-limit-hit")
        .env("MONITOR_UNIT", "harkd.service")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "rebooting: harkd.service: start-limit-hit\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.reboots_file()).unwrap(),
        "reboot\tharkd.service: start-limit-hit\n"
    );

    b.write_config("enabled = false");
    let out = b.decide();
    assert!(out.starts_with("deadman disabled"), "{out}");
    assert_eq!(b.reboots_recorded(), 1);
}

#[test]
fn decide_waits_out_the_spacing_then_reboots() {
    let b = Board::new("enabled = true\nmin_spacing_s = 60\nwindow_s = 3600");
    b.run(&["mark-good"]);
    assert_eq!(b.decide(), "rebooting: test\n");
    // Boot 2, 55 s in: 5 s to wait. The fixture uptime only moves when the test
    // moves it; decide sleeps the 5 s (+1) and asks again.
    b.boot(2, 55);
    let file = b.reboots_file().display().to_string();
    let mut child = b
        .cmd(&["decide", "--reason", "waited", "--record-reboot", &file])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr: Arc<Mutex<String>> = Arc::default();
    let err = child.stderr.take().unwrap();
    let e = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            e.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    // decide says it waits (its warning), rather than the test guessing when
    // it has got that far.
    common::wait_until(Duration::from_secs(15), "decide to say it waits", || {
        stderr
            .lock()
            .unwrap()
            .contains("too soon after the last reboot")
    });
    // The subject: it keeps waiting. Two seconds of it, out of its 6: however
    // late this look comes, the fixture uptime has not moved, so when decide
    // asks again it is still too soon and it waits again.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "decide ended before the spacing passed: {}",
        stderr.lock().unwrap()
    );
    assert_eq!(
        b.reboots_recorded(),
        1,
        "rebooted before the spacing passed"
    );
    let moved = Instant::now();
    b.boot(2, 61);
    // It asks again within 6 s (5 s to wait, +1); 30 s is the bound.
    let status = common::wait_timeout(&mut child, Duration::from_secs(30)).expect("decide hung");
    eprintln!(
        "FIGURE deadman: decide rebooted {:?} after the spacing passed (nominally under 6 s)",
        moved.elapsed()
    );
    assert!(status.success(), "{}", stderr.lock().unwrap());
    assert_eq!(b.reboots_recorded(), 2);
}

#[test]
fn an_unreadable_clock_is_an_error_not_a_reboot() {
    let b = Board::new(POLICY);
    b.run(&["mark-good"]);
    std::fs::write(b.procfs().join("uptime"), "garbage\n").unwrap();
    let (_, out) = b.run(&["decide", "--no-wait", "--record-reboot", "/dev/null"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an uptime"), "{err}");
}

// --- the agent's side ---------------------------------------------------------

/// An agent whose only capture stream can never run (no such ALSA device),
/// watched by the deadman after 2 s. Its tone stream runs, and must not hide that.
fn broken_agent_config(b: &Board) -> String {
    format!(
        r#"
[rtsp]
bind = "127.0.0.1"
port = @PORT@

[devices]
enabled = false
state_dir = "{}"

[deadman]
enabled = true
unhealthy_after_s = 2
good_after_s = 1

[[stream]]
name = "gone"
source = "alsa"
device = "hw:CARD=NoSuchCardHere"

[[stream]]
name = "tone"
source = "tone"
"#,
        b.state().display()
    )
}

/// Seconds in the deadman's way of writing a duration ("2s", "1m40s", "3h").
fn seconds_of(text: &str) -> Option<u64> {
    let (mut total, mut n) = (0, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            n.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total += n.parse::<u64>().ok()? * unit;
        n.clear();
    }
    n.is_empty().then_some(total)
}

fn start_agent(b: &Board, config: &str) -> Harkd {
    let procfs = b.procfs();
    Harkd::start_with_args(config, &[], &[("--procfs-root", procfs.to_str().unwrap())])
}

fn http_status(h: &Harkd) -> serde_json::Value {
    let body = common::http_get(h.http_port, "/api/v1/status");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_agent_exits_4_for_the_deadman_when_no_stream_can_run() {
    let b = Board::new(POLICY);
    b.run(&["mark-good"]);
    let mut h = start_agent(&b, &broken_agent_config(&b));
    let t = Instant::now();
    // Nominally 2 s (unhealthy_after_s) and a tick; 30 s is the bound.
    let status = common::wait_timeout(&mut h.child, Duration::from_secs(30))
        .expect("the agent did not stop for the deadman");
    assert_eq!(status.code(), Some(4), "{}", h.raw_log());
    let waited = t.elapsed();
    let line = h.wait_log(Duration::from_secs(10), |v| {
        msg(v).starts_with("deadman: the agent cannot work")
    });
    let reason = line["reason"].as_str().unwrap();
    eprintln!("FIGURE deadman: exit 4 {waited:?} after ready; {reason}");
    // Not before unhealthy_after_s, by the agent's own count (a lower bound:
    // load only makes it later).
    let unhealthy_for = reason
        .strip_prefix("no capture stream running for ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(seconds_of)
        .unwrap_or_else(|| panic!("{reason}"));
    assert!(unhealthy_for >= 2, "{reason}");
    assert!(
        reason.ends_with("(1 stream running, 1 not running)"),
        "{reason}"
    );
    // The agent does not record the reboot: `decide` (root) does.
    assert!(
        !b.ledger().exists()
            || !std::fs::read_to_string(b.ledger())
                .unwrap()
                .contains("\"reason\"")
    );
}

#[test]
fn a_refused_reboot_keeps_the_agent_up_and_says_why() {
    let b = Board::new(POLICY);
    // No ledger: locked. The agent wants a reboot, is refused, stays up.
    let mut h = start_agent(&b, &broken_agent_config(&b));
    h.wait_log(Duration::from_secs(10), |v| {
        msg(v) == "deadman: a reboot is wanted and refused; staying up"
    });
    let st = http_status(&h);
    assert_eq!(st["deadman"]["state"], "locked", "{st}");
    assert!(
        st["deadman"]["detail"]
            .as_str()
            .unwrap()
            .contains("locked until a good boot"),
        "{st}"
    );
    let metrics = common::http_get(h.http_port, "/metrics");
    assert!(
        metrics.contains("hark_deadman_state{state=\"locked\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("hark_deadman_reboot_limit 3"), "{metrics}");
    // The refusal is in the ledger for `harkd deadman status`.
    let (status, _) = b.run(&["status"]);
    assert!(
        status.contains("last refusal: no capture stream running"),
        "{status}"
    );
    // It stayed up (a refused agent must not exit 4).
    assert!(
        h.child.try_wait().unwrap().is_none(),
        "the agent exited although the ledger refuses a reboot"
    );
    let (exit, _) = h.stop();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_healthy_agent_marks_its_boot_good() {
    let b = Board::new(POLICY);
    let config = format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[devices]\nenabled = false\nstate_dir = \"{}\"\n\n\
         [deadman]\nenabled = true\ngood_after_s = 1\n\n[[stream]]\nname = \"tone\"\nsource = \"tone\"\n",
        b.state().display()
    );
    let h = start_agent(&b, &config);
    h.wait_log(Duration::from_secs(10), |v| {
        msg(v) == "deadman: boot marked good"
    });
    let (st, _) = common::wait_for(Duration::from_secs(10), "an armed, good boot", || {
        let st = http_status(&h);
        if st["deadman"]["state"] == "armed" && st["deadman"]["good_boot"] == true {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    assert_eq!(st["deadman"]["reboots_in_window"], 0);
    let ledger: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.ledger()).unwrap()).unwrap();
    assert_eq!(ledger["version"], 1);
    assert_eq!(
        ledger["last_good"]["boot_id"],
        "00000001-1111-4222-8333-444444444444"
    );
    assert_eq!(ledger["locked"], serde_json::Value::Null);
}

// --- the config `decide` runs on, and a slow state directory -------------------

/// `decide --no-wait`, recording instead of rebooting: (stdout, stderr, exit code).
fn decide_raw(b: &Board) -> (String, String, Option<i32>) {
    let file = b.reboots_file();
    let (text, out) = b.run(&[
        "decide",
        "--no-wait",
        "--reason",
        "test",
        "--record-reboot",
        file.to_str().unwrap(),
    ]);
    (
        text,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn decide_never_reboots_on_a_config_it_cannot_use() {
    let b = Board::new(POLICY);
    b.run(&["mark-good"]);
    let config = b.config().display().to_string();
    // With a usable config this ledger would allow a reboot now; each broken
    // config must stop that, say so naming the file, and exit 3.
    for what in ["invalid", "a directory", "a link to nowhere"] {
        let _ = std::fs::remove_file(b.config());
        let _ = std::fs::remove_dir(b.config());
        match what {
            "invalid" => {
                std::fs::write(b.config(), "[deadman]\nenabled = true\nmax_reboots = 0\n").unwrap()
            }
            "a directory" => std::fs::create_dir(b.config()).unwrap(),
            // A config on a partition that is not mounted.
            _ => std::os::unix::fs::symlink(b.dir.path().join("unmounted/hark.toml"), b.config())
                .unwrap(),
        }
        let (stdout, stderr, code) = decide_raw(&b);
        assert_eq!(code, Some(3), "{what}: {stdout}{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("no reboot"))
            .unwrap_or_else(|| panic!("{what}: no \"no reboot\" in {stderr:?}"));
        assert!(
            line.contains("ERROR") && line.contains(&config),
            "{what}: {line}"
        );
        assert_eq!(b.reboots_recorded(), 0, "{what}: rebooted");
    }
    // The invalid file's own error is in the line too.
    std::fs::remove_file(b.config()).unwrap();
    std::fs::write(b.config(), "[deadman]\nenabled = true\nmax_reboots = 0\n").unwrap();
    let (_, stderr, _) = decide_raw(&b);
    assert!(stderr.contains("deadman.max_reboots"), "{stderr}");
    // A good config again: the same ledger allows the reboot (the refusal was
    // the config's doing).
    b.write_config(POLICY);
    assert_eq!(b.decide(), "rebooting: test\n");
}

#[test]
fn decide_without_a_config_file_uses_the_defaults_and_says_so() {
    let b = Board::new(POLICY);
    b.run(&["mark-good"]);
    std::fs::remove_file(b.config()).unwrap();
    let config = b.config().display().to_string();
    let (stdout, stderr, code) = decide_raw(&b);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // The defaults disable the deadman: no reboot.
    assert_eq!(
        stdout,
        "deadman disabled in (built-in defaults): no reboot (test)\n"
    );
    assert_eq!(b.reboots_recorded(), 0);
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("built-in defaults"))
        .collect();
    assert_eq!(said.len(), 1, "one line says so: {stderr}");
    assert!(
        said[0].contains("WARN") && said[0].contains(&format!("no config file at {config}")),
        "{}",
        said[0]
    );
    // The report commands say it too.
    let (_, out) = b.run(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no config file at"), "{stderr}");

    // Without --config: /etc/hark/hark.toml, when this machine has none.
    if std::fs::symlink_metadata("/etc/hark/hark.toml").is_err() {
        let out = Command::new(HARKD)
            .args(["deadman", "decide", "--no-wait", "--reason", "test"])
            .arg("--record-reboot")
            .arg(b.reboots_file())
            .arg("--procfs-root")
            .arg(b.procfs())
            .env_remove("MONITOR_EXIT_STATUS")
            .env_remove("MONITOR_SERVICE_RESULT")
            .env("HARK_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains("no config file at /etc/hark/hark.toml"),
            "{stderr}"
        );
        assert_eq!(b.reboots_recorded(), 0);
    } else {
        eprintln!("SKIP: /etc/hark/hark.toml exists on this machine");
    }
}

#[test]
fn a_slow_state_directory_does_not_hold_up_the_agent() {
    // Every state-file write sleeps this long first (the test hook); the
    // deadman's first write, registering this boot, starts as the agent starts.
    const SLOW: Duration = Duration::from_secs(6);
    let b = Board::new(POLICY);
    let config = format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[devices]\nenabled = false\nstate_dir = \"{}\"\n\n\
         [deadman]\nenabled = true\ngood_after_s = 3600\n\n[[stream]]\nname = \"tone\"\nsource = \"tone\"\n",
        b.state().display()
    );
    let procfs = b.procfs();
    let started = Instant::now();
    let h = Harkd::start_with_args(
        &config,
        &[("HARK_TEST_SLOW_STORE_MS", &SLOW.as_millis().to_string())],
        &[
            ("--procfs-root", procfs.to_str().unwrap()),
            ("--test-hooks", ""),
        ],
    );
    let ready = started.elapsed();
    // The subject: the runtime serves HTTP while the write is in flight. On a
    // runtime blocked by the write, no answer could come before the file lands.
    let asked = Instant::now();
    let st = http_status(&h);
    let answered = asked.elapsed();
    assert!(
        !b.ledger().exists(),
        "HTTP answered only after the slow write landed (ready after {ready:?}, \
         answered in {answered:?}): {st}"
    );
    // The hook was in effect: the write lands, and not before the delay.
    common::wait_until(Duration::from_secs(30), "the ledger to be written", || {
        b.ledger().exists()
    });
    let landed = started.elapsed();
    eprintln!(
        "FIGURE deadman: with {SLOW:?} writes, ready after {ready:?}, HTTP answered in \
         {answered:?}, the ledger landed after {landed:?}"
    );
    assert!(landed >= SLOW, "the write landed after {landed:?}");
    // And the deadman carries on: it shows the (new, locked) ledger.
    common::wait_for(Duration::from_secs(10), "the deadman's status", || {
        let st = http_status(&h);
        if st["deadman"]["state"] == "locked" {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    let (exit, _) = h.stop();
    assert!(exit.success(), "{exit:?}");
}

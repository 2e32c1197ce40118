//! A private D-Bus bus for tests: `dbus-daemon` with a given policy, and
//! `busctl` against it (as root or as an unprivileged uid).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Harkd;

/// A private bus: `dbus-daemon` with `config`, listening on a unix socket.
pub struct Bus {
    child: Child,
    /// `unix:path=<socket>`, without the daemon's guid, so that the address
    /// still reaches a new daemon started on the same socket.
    pub address: String,
    _dir: Option<tempfile::TempDir>,
}

/// Everyone may do anything, as on a session bus.
const OPEN: &str = r#"<policy context="default"><allow user="*"/><allow own="*"/><allow send_type="method_call"/><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/></policy>"#;

/// `unix:path=<socket>`: what clients of a bus at `socket` are given.
pub fn address_of(socket: &Path) -> String {
    format!("unix:path={}", socket.display())
}

impl Bus {
    pub fn start(policy: &str) -> Bus {
        let dir = tempfile::tempdir().unwrap();
        // Others (the unprivileged caller) must reach the socket.
        Command::new("chmod")
            .arg("755")
            .arg(dir.path())
            .status()
            .unwrap();
        let mut bus = Bus::start_at(&dir.path().join("bus"), policy);
        bus._dir = Some(dir);
        bus
    }

    /// A bus listening at `socket` (its config beside it, `<socket>.conf`);
    /// returns once it accepts connections. The caller owns the directory, so
    /// a bus can be started where a client already looks for one, and started
    /// again on the same path after it was killed (dbus-daemon replaces a
    /// stale socket file).
    pub fn start_at(socket: &Path, policy: &str) -> Bus {
        let conf = socket.with_extension("conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>hark-test</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dbus-daemon");
        // Printed once the daemon listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("unix:"), "dbus-daemon said {line:?}");
        Bus {
            child,
            address: address_of(socket),
            _dir: None,
        }
    }

    /// A bus like a session bus: everyone may do anything.
    pub fn open() -> Bus {
        Bus::start(OPEN)
    }

    /// As [`Bus::open`], listening at `socket`.
    pub fn open_at(socket: &Path) -> Bus {
        Bus::start_at(socket, OPEN)
    }

    /// Kills the daemon (SIGKILL, as a crash would) and reaps it.
    pub fn kill(self) {
        drop(self);
    }

    pub fn busctl(&self, args: &[&str]) -> (bool, String) {
        self.busctl_as(None, args)
    }

    /// Runs busctl, as root or as an unprivileged uid.
    pub fn busctl_as(&self, uid: Option<u32>, args: &[&str]) -> (bool, String) {
        let mut cmd = match uid {
            None => Command::new("busctl"),
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={u}"),
                    &format!("--regid={u}"),
                    "--clear-groups",
                    "busctl",
                ]);
                c
            }
        };
        let out = cmd
            .arg(format!("--address={}", self.address))
            .args(["--no-pager"])
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn harkd(&self, config: &str) -> Harkd {
        harkd_at(&self.address, config)
    }
}

/// harkd serving on the bus at `address` (`--bus session`), whether or not a
/// bus runs there.
pub fn harkd_at(address: &str, config: &str) -> Harkd {
    Harkd::start_with_args(
        config,
        &[("DBUS_SESSION_BUS_ADDRESS", address)],
        &[("--bus", "session")],
    )
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dbus-monitor` watching ObjectManager signals, its output collected.
pub struct Monitor {
    child: Child,
    seen: Arc<Mutex<String>>,
}

impl Bus {
    pub fn monitor_object_manager(&self) -> Monitor {
        let mut child = Command::new("dbus-monitor")
            .args(["--address", &self.address])
            .arg("type='signal',interface='org.freedesktop.DBus.ObjectManager'")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(String::new()));
        let s2 = seen.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                s2.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let monitor = Monitor { child, seen };
        // dbus-monitor's match is in place once it sees a signal it matches:
        // emit probes (an ObjectManager member no one else sends) until one
        // shows up, instead of guessing how long registering takes.
        let probe = "member=HarkTestMonitorProbe";
        let mut sent = 0;
        super::wait_until(
            Duration::from_secs(15),
            "dbus-monitor to see its own probe signal",
            || {
                if monitor.seen.lock().unwrap().contains(probe) {
                    return true;
                }
                // One probe every 200 ms is plenty; dbus-send is a process.
                if sent % 4 == 0 {
                    let _ = Command::new("dbus-send")
                        .arg(format!("--bus={}", self.address))
                        .args([
                            "--type=signal",
                            "/org/hark/TestProbe",
                            "org.freedesktop.DBus.ObjectManager.HarkTestMonitorProbe",
                        ])
                        .status();
                }
                sent += 1;
                false
            },
        );
        monitor
    }
}

impl Monitor {
    /// Waits (15 s at most) until the collected output satisfies `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let t = Instant::now();
        while !pred(&self.seen.lock().unwrap()) {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "no {what} in:\n{}",
                self.seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("FIGURE dbus-monitor: {what} seen after {:?}", t.elapsed());
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

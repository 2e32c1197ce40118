//! D-Bus against the real binary and a private `dbus-daemon` started by the test:
//! `busctl` introspection and tree, property values that match the running
//! streams, GetManagedObjects, objects coming and going with
//! InterfacesAdded/InterfacesRemoved (seen by `dbus-monitor`), typed errors, and
//! the shipped policy: anyone may read, only root may call methods. And the
//! control plane is not in the streams' way: harkd streams without a bus and
//! connects when one appears, and survives a bus restart (reconnects, serves
//! every object again) without a dropout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::bus::{self, Bus};
use common::{FfmpegClient, Harkd, http_get, http_get_full, is_event, msg};
use serde_json::Value;

const TONE: &str = "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[devices]\nenabled = false\n\n[[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 1000.0\ntone_dbfs = -12.0\n";

/// Calls an `org.hark.Agent1` method with busctl, as root or as `uid`.
fn call(bus: &Bus, uid: Option<u32>, method_and_args: &[&str]) -> (bool, String) {
    let mut args = vec![
        "call",
        "org.hark.Agent1",
        "/org/hark/Agent1",
        "org.hark.Agent1",
    ];
    args.extend_from_slice(method_and_args);
    bus.busctl_as(uid, &args)
}

/// Polls `f` (15 s at most) until it holds.
fn wait_for(what: &str, f: impl FnMut() -> bool) {
    common::wait_until(Duration::from_secs(15), what, f);
}

#[test]
fn busctl_sees_the_agent_its_streams_and_typed_errors() {
    let bus = Bus::open();
    let h = bus.harkd(TONE);
    h.wait_log(Duration::from_secs(10), |v| msg(v) == "D-Bus name taken");
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });

    let (ok, out) = bus.busctl(&["introspect", "org.hark.Agent1", "/org/hark/Agent1"]);
    assert!(ok, "{out}");
    for want in [
        "org.hark.Agent1",
        "org.freedesktop.DBus.ObjectManager",
        ".Reload",
        ".RestartStream",
        ".Version",
        ".State",
        ".StreamCount",
        ".RtspUrlBase",
        ".DeadmanState",
        ".RebootsInWindow",
        ".RebootLimit",
        ".DeadmanDetail",
        "interface",
        "method",
        "property",
    ] {
        assert!(out.contains(want), "introspect lacks {want}:\n{out}");
    }
    let (ok, out) = bus.busctl(&["tree", "org.hark.Agent1"]);
    assert!(ok && out.contains("/org/hark/Agent1/device/tone"), "{out}");
    // The introspection XML carries each member's documentation.
    let (ok, xml) = bus.busctl(&[
        "introspect",
        "--xml-interface",
        "org.hark.Agent1",
        "/org/hark/Agent1",
    ]);
    assert!(
        ok && xml.contains("Restart one stream's capture pipeline now."),
        "{xml}"
    );
    assert!(
        xml.contains("Re-read the configuration file and apply the difference"),
        "{xml}"
    );
    let (ok, xml) = bus.busctl(&[
        "introspect",
        "--xml-interface",
        "org.hark.Agent1",
        "/org/hark/Agent1/device/tone",
    ]);
    assert!(
        ok && xml.contains("starting, running, stalled or failed."),
        "{xml}"
    );

    let get = |path: &str, iface: &str, prop: &str| {
        let (ok, out) = bus.busctl(&["get-property", "org.hark.Agent1", path, iface, prop]);
        assert!(ok, "{prop}: {out}");
        out.trim().to_string()
    };
    assert_eq!(
        get("/org/hark/Agent1", "org.hark.Agent1", "Version"),
        format!("s \"{}\"", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        get("/org/hark/Agent1", "org.hark.Agent1", "StreamCount"),
        "u 1"
    );
    assert_eq!(
        get("/org/hark/Agent1", "org.hark.Agent1", "RtspUrlBase"),
        format!("s \"rtsp://127.0.0.1:{}/\"", h.port)
    );
    // This config leaves the deadman at its default: off.
    assert_eq!(
        get("/org/hark/Agent1", "org.hark.Agent1", "DeadmanState"),
        "s \"disabled\""
    );
    assert_eq!(
        get("/org/hark/Agent1", "org.hark.Agent1", "RebootLimit"),
        "u 0"
    );
    wait_for("State running", || {
        get("/org/hark/Agent1", "org.hark.Agent1", "State") == "s \"running\""
    });
    let dev = "/org/hark/Agent1/device/tone";
    assert_eq!(get(dev, "org.hark.Device1", "Name"), "s \"tone\"");
    assert_eq!(get(dev, "org.hark.Device1", "StreamState"), "s \"running\"");
    assert_eq!(get(dev, "org.hark.Device1", "SampleRate"), "u 48000");
    assert_eq!(get(dev, "org.hark.Device1", "Codec"), "s \"opus\"");
    assert_eq!(get(dev, "org.hark.Device1", "Card"), "i -1");
    assert_eq!(
        get(dev, "org.hark.Device1", "StreamUrl"),
        format!("s \"rtsp://127.0.0.1:{}/tone\"", h.port)
    );
    wait_for("a level near -12 dBFS", || {
        let v = get(dev, "org.hark.Device1", "PeakDbfs");
        v.strip_prefix("d ")
            .and_then(|x| x.parse::<f64>().ok())
            .is_some_and(|p| (p + 12.0).abs() < 1.0)
    });

    let (ok, out) = bus.busctl(&[
        "call",
        "org.hark.Agent1",
        "/org/hark/Agent1",
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
    ]);
    assert!(
        ok && out.contains("/org/hark/Agent1/device/tone") && out.contains("org.hark.Device1"),
        "{out}"
    );

    let (ok, out) = call(&bus, None, &["RestartStream", "s", "nope"]);
    assert!(!ok, "{out}");
    assert!(out.contains("no stream named \"nope\""), "{out}");
    // busctl names the error: check it through dbus-send, which prints the name.
    let out = Command::new("dbus-send")
        .arg(format!("--bus={}", bus.address))
        .args([
            "--print-reply",
            "--dest=org.hark.Agent1",
            "/org/hark/Agent1",
            "org.hark.Agent1.RestartStream",
            "string:nope",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("org.hark.Error.NoSuchStream"),
        "{out:?}"
    );

    let mark = h.mark();
    let (ok, out) = call(&bus, None, &["RestartStream", "s", "tone"]);
    assert!(ok, "{out}");
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "restart requested", "tone")
    });
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
}

#[test]
fn objects_come_and_go_with_interfaces_added_and_removed() {
    let bus = Bus::open();
    let h = bus.harkd(TONE);
    h.wait_log(Duration::from_secs(10), |v| msg(v) == "D-Bus name taken");
    let monitor = bus.monitor_object_manager();
    let extra = format!("{TONE}\n[[stream]]\nname = \"extra-1\"\nsource = \"tone\"\n");
    h.reload(&extra);
    let path = "/org/hark/Agent1/device/extra_2d1";
    monitor.wait_for("InterfacesAdded", |s| {
        s.contains("member=InterfacesAdded") && s.contains(path) && s.contains("org.hark.Device1")
    });
    let (ok, out) = bus.busctl(&["tree", "org.hark.Agent1"]);
    assert!(ok && out.contains(path), "{out}");
    h.reload(TONE);
    monitor.wait_for("InterfacesRemoved", |s| {
        s.contains("member=InterfacesRemoved") && s.matches(path).count() >= 2
    });
    let (_, out) = bus.busctl(&["tree", "org.hark.Agent1"]);
    assert!(!out.contains(path), "{out}");
}

#[test]
fn the_shipped_policy_lets_anyone_read_and_only_root_act() {
    let policy_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/dbus/org.hark.Agent1.conf");
    // A system-bus-like default (deny unless allowed), the shipped file, and, for
    // this test only, root may own the name (harkd runs as root here; on the
    // appliance it is the hark user, which the shipped file allows).
    let bus = Bus::start(&format!(
        r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="*"/>
  </policy>
  <policy user="root"><allow own="org.hark.Agent1"/></policy>
  <include>{}</include>"#,
        policy_file.display()
    ));
    let h = bus.harkd(TONE);
    h.wait_log(Duration::from_secs(10), |v| msg(v) == "D-Bus name taken");
    let nobody = Some(65534);
    let (ok, out) = bus.busctl_as(
        nobody,
        &[
            "get-property",
            "org.hark.Agent1",
            "/org/hark/Agent1",
            "org.hark.Agent1",
            "Version",
        ],
    );
    assert!(ok, "an unprivileged reader was refused: {out}");
    let (ok, out) = bus.busctl_as(
        nobody,
        &["introspect", "org.hark.Agent1", "/org/hark/Agent1"],
    );
    assert!(ok && out.contains("RestartStream"), "{out}");
    let (ok, out) = call(&bus, nobody, &["RestartStream", "s", "tone"]);
    assert!(
        !ok && out.contains("ccess denied"),
        "an unprivileged caller could restart: {out}"
    );
    let (ok, out) = call(&bus, nobody, &["Reload"]);
    assert!(!ok && out.contains("ccess denied"), "{out}");
    let (ok, out) = call(&bus, None, &["RestartStream", "s", "tone"]);
    assert!(ok, "root was refused: {out}");
    // Nobody but the owner may take the name.
    let (ok, _) = bus.busctl_as(
        nobody,
        &[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "RequestName",
            "su",
            "org.hark.Agent1",
            "0",
        ],
    );
    assert!(!ok);
}

/// The `dbus` object of `/api/v1/status`, with the agent's `state`.
fn dbus_status(h: &Harkd) -> (Value, String) {
    let status: Value = serde_json::from_str(&http_get(h.http_port, "/api/v1/status")).unwrap();
    (
        status["dbus"].clone(),
        status["state"].as_str().unwrap_or("").into(),
    )
}

/// Waits (15 s at most) until the status endpoint shows the bus in `state`;
/// returns its `dbus` object.
fn wait_bus_state(h: &Harkd, state: &str) -> Value {
    common::wait_for(
        Duration::from_secs(15),
        &format!("dbus.state {state:?} in /api/v1/status"),
        || {
            let (b, _) = dbus_status(h);
            if b["state"] == state {
                Ok(b)
            } else {
                Err(b.to_string())
            }
        },
    )
    .0
}

/// The `hark_dbus_connected` sample, if any.
fn dbus_connected_metric(h: &Harkd) -> Option<String> {
    http_get(h.http_port, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("hark_dbus_connected "))
        .map(str::to_string)
}

#[test]
fn streams_run_without_the_bus_and_the_agent_connects_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus");
    // Nothing listens at the address yet: harkd must start all the same.
    let h = bus::harkd_at(&bus::address_of(&socket), TONE);
    h.wait_log(Duration::from_secs(10), |v| {
        msg(v) == "D-Bus not available; streams run without it, retrying"
    });
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    common::ffmpeg_pull(&h.url("tone"), "tcp", 1.5).assert_tone(1.4, 1000.0, -15.0);

    // The flag, with a reason; the streams are healthy all the same.
    let b = wait_bus_state(&h, "connecting");
    assert_eq!(b["wanted"], "session", "{b}");
    assert!(
        b["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no reason given: {b}"
    );
    let (_, state) = dbus_status(&h);
    assert_eq!(state, "running");
    let (code, body) = http_get_full(h.http_port, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(dbus_connected_metric(&h).as_deref(), Some("0"));
    // Retries are not each a warning.
    let warnings = h.logs_after(0, |v| {
        v["level"] == "WARN" && v["target"] == "hark_agent::dbus"
    });
    assert_eq!(warnings.len(), 1, "{}", h.raw_log());

    // A bus appears where harkd looks for one: it connects on its own.
    let mark = h.mark();
    let t = Instant::now();
    let bus = Bus::open_at(&socket);
    h.wait_log_after(mark, Duration::from_secs(30), |v| {
        msg(v) == "D-Bus name taken"
    });
    eprintln!(
        "FIGURE dbus: name taken {:?} after the bus appeared",
        t.elapsed()
    );
    let (ok, out) = bus.busctl(&["tree", "org.hark.Agent1"]);
    assert!(ok && out.contains("/org/hark/Agent1/device/tone"), "{out}");
    let (ok, out) = bus.busctl(&[
        "introspect",
        "org.hark.Agent1",
        "/org/hark/Agent1/device/tone",
    ]);
    assert!(
        ok && out.contains("org.hark.Device1") && out.contains(".StreamState"),
        "{out}"
    );
    let b = wait_bus_state(&h, "connected");
    assert_eq!(b["detail"], Value::Null, "{b}");
    assert_eq!(b["reconnects"], 0, "{b}");
    assert_eq!(dbus_connected_metric(&h).as_deref(), Some("1"));
}

#[test]
fn a_bus_restart_under_a_streaming_agent_loses_no_audio_and_republishes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus");
    let bus = Bus::open_at(&socket);
    let h = bus.harkd(TONE);
    h.wait_log(Duration::from_secs(10), |v| msg(v) == "D-Bus name taken");
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    wait_bus_state(&h, "connected");
    let mut client = FfmpegClient::start(&h.url("tone"), "tcp");
    client.wait_audio(0.5, Duration::from_secs(30));
    let before = client.seconds();
    let outage = Instant::now();

    // The bus dies (SIGKILL, as a crash): harkd says so and keeps streaming.
    let mark = h.mark();
    bus.kill();
    let b = wait_bus_state(&h, "lost");
    eprintln!(
        "FIGURE dbus: lost shown {:?} after the bus was killed",
        outage.elapsed()
    );
    assert!(
        b["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no reason given: {b}"
    );
    assert_eq!(dbus_connected_metric(&h).as_deref(), Some("0"));
    let (code, body) = http_get_full(h.http_port, "/healthz");
    assert_eq!(code, 200, "{body}");
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        v["level"] == "WARN" && msg(v).starts_with("D-Bus connection lost")
    });

    // A new bus on the same socket: harkd reconnects and serves every object
    // again.
    let t = Instant::now();
    let bus = Bus::open_at(&socket);
    h.wait_log_after(mark, Duration::from_secs(30), |v| {
        msg(v) == "D-Bus name taken"
    });
    let reconnect = t.elapsed();
    eprintln!("FIGURE dbus: name taken again {reconnect:?} after the bus restarted");
    let dev = "/org/hark/Agent1/device/tone";
    let (ok, out) = bus.busctl(&["tree", "org.hark.Agent1"]);
    assert!(ok && out.contains(dev), "{out}");
    let (ok, out) = bus.busctl(&[
        "get-property",
        "org.hark.Agent1",
        dev,
        "org.hark.Device1",
        "StreamState",
    ]);
    assert!(ok && out.trim() == "s \"running\"", "{out}");
    let (ok, out) = bus.busctl(&[
        "get-property",
        "org.hark.Agent1",
        "/org/hark/Agent1",
        "org.hark.Agent1",
        "StreamCount",
    ]);
    assert!(ok && out.trim() == "u 1", "{out}");
    let b = wait_bus_state(&h, "connected");
    assert_eq!(b["reconnects"], 1, "{b}");
    assert_eq!(dbus_connected_metric(&h).as_deref(), Some("1"));
    // Only one warning of harkd's for the outage, however many retries it
    // took (zbus may add its own about the socket it lost).
    let warnings = h.logs_after(mark, |v| {
        v["level"] == "WARN" && v["target"] == "hark_agent::dbus"
    });
    assert_eq!(warnings.len(), 1, "{warnings:?}");

    // The client played through it all: half a second past the reconnect at
    // least, and every 250 ms window holds the tone.
    let want = before + outage.elapsed().as_secs_f64() + 0.5;
    client.wait_audio(want, Duration::from_secs(30));
    let pcm = client.stop();
    pcm.assert_unbroken(want, 1000.0, -15.0);
    assert_eq!(common::restarts(&h, "tone"), Some(0));
}

//! The command line and configuration through the real binary: shipped configs
//! parse (including every commented-out key), and each kind of bad file gives its
//! own message with file, line, column and key, and exit code 3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::HARKD;

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

fn check(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(HARKD)
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_configs_parse() {
    for f in ["configs/hark.toml", "configs/dev.toml"] {
        let (code, out, err) = check(&repo_file(f));
        assert_eq!(code, 0, "{f}: {err}");
        assert!(out.contains("stream /test-tone"), "{f}: {out}");
    }
}

/// The shipped config documents optional keys as comments; they must be valid too.
#[test]
fn commented_keys_of_the_shipped_config_are_valid() {
    let text = std::fs::read_to_string(repo_file("configs/hark.toml")).unwrap();
    let mut uncommented = String::new();
    let mut count = 0;
    for line in text.lines() {
        let t = line.trim_start_matches("# ");
        let is_key = t.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        let is_table = t.starts_with('[') && t.ends_with(']') && line.starts_with("# [");
        if line.starts_with("# ") && (is_key || is_table) {
            uncommented.push_str(t);
            count += 1;
        } else {
            uncommented.push_str(line);
        }
        uncommented.push('\n');
    }
    assert!(count >= 10, "expected commented keys, found {count}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("all.toml");
    std::fs::write(&p, &uncommented).unwrap();
    let (code, out, err) = check(&p);
    assert_eq!(code, 0, "{err}\n{uncommented}");
    assert!(out.contains("authentication on"), "{out}");
    assert!(
        out.contains("stream /garden: alsa hw:CARD=Device,DEV=0"),
        "{out}"
    );
}

#[test]
fn bad_configs_name_the_place_and_exit_3() {
    let stream = "[[stream]]\nname = \"a\"\nsource = \"tone\"\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown key",
            b"[rtsp]\nprot = 8554\n".to_vec(),
            ":2:1: rtsp.prot: unknown field `prot`",
        ),
        (
            "wrong type",
            b"[rtsp]\nport = \"8554\"\n".to_vec(),
            ":2:8: rtsp.port: invalid type: string",
        ),
        (
            "port 0",
            b"[rtsp]\nport = 0\n".to_vec(),
            ":2:8: rtsp.port: port 0 is out of range",
        ),
        (
            "port 70000",
            b"[rtsp]\nport = 70000\n".to_vec(),
            ":2:8: rtsp.port: port 70000 is out of range",
        ),
        (
            "negative bitrate",
            format!("{stream}bitrate = -64000\n").into_bytes(),
            ":4:11: stream[0].bitrate: invalid value: integer `-64000`",
        ),
        (
            "duplicate names",
            format!("{stream}{stream}").into_bytes(),
            ":5:8: stream[1].name: duplicate stream name \"a\"",
        ),
        (
            "unknown codec",
            format!("{stream}codec = \"vorbis\"\n").into_bytes(),
            ":4:9: stream[0].codec: unknown variant `vorbis`",
        ),
        (
            "empty file",
            b"".to_vec(),
            ":1:1: (file): the file is empty",
        ),
        (
            "only comments",
            b"# nothing\n\n".to_vec(),
            ":1:1: (file): the file is empty",
        ),
        (
            "binary garbage",
            vec![0x7f, b'E', b'L', b'F', 0x02, 0x01, 0x01, 0x00, 0xff, 0xfe],
            ":1:9: (file): the file is not UTF-8 text",
        ),
        (
            "syntax error",
            b"[rtsp\nport = 1\n".to_vec(),
            ":1:6: (syntax):",
        ),
        (
            "alsa without device",
            b"[[stream]]\nname = \"m\"\nsource = \"alsa\"\n".to_vec(),
            ":3:10: stream[0].source: an alsa source needs device",
        ),
        (
            "opus at 44.1 kHz",
            format!("{stream}sample_rate = 44100\n").into_bytes(),
            ":4:15: stream[0].sample_rate: opus cannot encode 44100 Hz",
        ),
        (
            "device rule matching nothing",
            b"[[device]]\nname = \"m\"\ncodec = \"l16\"\n".to_vec(),
            ":2:8: device[0].name: a [[device]] rule needs at least one of serial, vendor_product, port",
        ),
        (
            "bad vendor_product",
            b"[[device]]\nname = \"m\"\nvendor_product = \"0d8c-0014\"\n".to_vec(),
            ":3:18: device[0].vendor_product: must look like",
        ),
        (
            "device name taken by a stream",
            format!("{stream}[[device]]\nname = \"a\"\nport = \"1-1\"\n").into_bytes(),
            ":5:8: device[0].name: duplicate name \"a\"",
        ),
        (
            "http on a public address",
            b"[http]\nlisten = \"0.0.0.0:8780\"\n".to_vec(),
            ":2:10: http.listen: 0.0.0.0:8780 is not a loopback address",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, content, want) in cases {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, &content).unwrap();
        let (code, _, err) = check(&p);
        assert_eq!(code, 3, "{what}: exit code; stderr: {err}");
        let want = format!("{}{want}", p.display());
        assert!(err.starts_with(&want), "{what}:\n got: {err}\nwant: {want}");
        // `run` refuses the same file the same way, before starting anything.
        let out = Command::new(HARKD)
            .arg("run")
            .arg("--config")
            .arg(&p)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{what}: run exit code");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with(&want),
            "{what}: run message"
        );
    }
}

#[test]
fn missing_file_is_a_config_error() {
    let (code, _, err) = check(std::path::Path::new("/nonexistent/hark.toml"));
    assert_eq!(code, 3);
    assert!(
        err.contains("/nonexistent/hark.toml:0:0: (file): cannot read"),
        "{err}"
    );
}

#[test]
fn usage_and_version_exit_codes() {
    let out = Command::new(HARKD).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(HARKD).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(HARKD).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("harkd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn port_in_use_is_a_clear_failure() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        format!("[rtsp]\nbind = \"127.0.0.1\"\nport = {port}\n[[stream]]\nname = \"a\"\nsource = \"tone\"\n"),
    )
    .unwrap();
    let out = Command::new(HARKD)
        .arg("run")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for RTSP on 127.0.0.1:{port}")),
        "{err}"
    );
}

/// `check-config` lists each webhook by its host only (a URL's path or query
/// may be a token), and warns, without failing, about a file it cannot read.
#[test]
fn check_config_lists_webhooks_without_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hark.toml");
    std::fs::write(
        &path,
        "[[stream]]\nname = \"a\"\nsource = \"tone\"\n\n\
         [[alert]]\nname = \"phone\"\nurl = \"https://ntfy.sh/secret-topic-123\"\nformat = \"text\"\n\
         events = [\"stream_silent\"]\n\n\
         [[alert]]\nurl = \"https://hooks.example.org/h?token=t0k3n\"\nsecret = \"hunter2\"\n\
         ca_file = \"/nonexistent/ca.pem\"\n",
    )
    .unwrap();
    let (code, out, err) = check(&path);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("alert phone: https to ntfy.sh, text, stream_silent\n"),
        "{out}"
    );
    assert!(
        out.contains("alert alert-2: https to hooks.example.org, json, signed, every event (warning: cannot read ca_file /nonexistent/ca.pem"),
        "{out}"
    );
    for secret in ["secret-topic-123", "t0k3n", "hunter2"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    }
}

/// `check-config` says where the page is, how many may listen, and whether
/// credentials are asked (never which).
#[test]
fn check_config_says_where_the_page_is_and_whether_it_asks_for_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hark.toml");
    let cases = [
        (
            "[http]\n",
            "http: http://127.0.0.1:8780/ (status page; up to 8 browsers listening; no credentials asked)",
        ),
        (
            "[rtsp.auth]\nuser = \"u\"\npassword = \"rtsp-pw\"\n[http]\nlisten = \"0.0.0.0:8780\"\nallow_non_loopback = true\nmax_listeners = 0\n",
            "http: http://0.0.0.0:8780/ (status page; browser listening off; the RTSP credentials asked)",
        ),
        (
            "[http]\nmax_listeners = 2\n[http.auth]\nuser = \"op\"\npassword = \"page-pw\"\n",
            "http: http://127.0.0.1:8780/ (status page; up to 2 browsers listening; credentials asked)",
        ),
    ];
    for (text, line) in cases {
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = check(&path);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("{line}\n")), "{text}: {out}");
        assert!(!out.contains("-pw"), "{out}");
    }
}

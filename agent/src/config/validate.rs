//! [`RawConfig`] to [`Config`]: one function per section, each naming the key
//! (and so the file position) of the first problem it finds. `[[stream]]` and
//! `[devices]`/`[[device]]` have their own modules, and every encoding setting is
//! checked by `encoding`, whichever table it is written in.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::locate::{Seg, Validator, at};
use super::schema::{
    RawAuth, RawConfig, RawDeadman, RawHealth, RawHttp, RawRecording, RawRestart, RawRtsp,
};
use super::{
    Config, ConfigError, DeadmanConfig, HealthConfig, HttpConfig, RecordingConfig, RestartConfig,
    RtspAuth, RtspConfig, alerts, devices, encoding, groups, streams,
};

pub(super) fn validate(path: &Path, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let v = Validator::new(path, text);
    let rtsp = rtsp(&v, raw.rtsp)?;
    let http = http(&v, &raw.http, rtsp.auth.as_ref())?;
    let health = health(&v, &raw.health)?;
    let restart = restart(&v, &raw.restart)?;
    let deadman = deadman(&v, &raw.deadman)?;
    // [defaults] must be valid on its own, even when no stream or device uses a key.
    let defaults = encoding::defaults(&v, &raw.defaults)?;
    let mut streams = streams::validate(&v, &raw.stream, &raw.defaults)?;
    let groups = groups::validate(&v, &raw.group, &raw.defaults, &streams, &raw.device)?;
    streams.extend(groups);
    let names: BTreeSet<String> = streams.iter().map(|s| s.name.clone()).collect();
    let devices = devices::validate(
        &v,
        &raw.devices,
        &raw.device,
        &raw.defaults,
        defaults,
        names,
    )?;
    let recording = recording(&v, &raw.recording, &devices.state_dir)?;
    let alerts = alerts::validate(&v, &raw.alert)?;
    Ok(Config {
        path: path.to_path_buf(),
        rtsp,
        http,
        health,
        restart,
        streams,
        devices,
        deadman,
        recording,
        alerts,
    })
}

fn rtsp(v: &Validator<'_>, r: RawRtsp) -> Result<RtspConfig, ConfigError> {
    let key = |k| at(&[Seg::Key("rtsp")], k);
    let port = u16::try_from(r.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            v.error(
                &key("port"),
                format!("port {} is out of range; use 1-65535", r.port),
            )
        })?;
    let auth = r.auth.map(|a| credentials(v, "rtsp", &a)).transpose()?;
    Ok(RtspConfig {
        bind: r.bind,
        port,
        auth,
    })
}

/// `[<table>.auth]`: a user and a password, as HTTP Basic can carry them.
fn credentials(
    v: &Validator<'_>,
    table: &'static str,
    a: &RawAuth,
) -> Result<RtspAuth, ConfigError> {
    let key = |k| at(&[Seg::Key(table), Seg::Key("auth")], k);
    let bad_user =
        a.user.is_empty() || a.user.contains(':') || a.user.chars().any(char::is_control);
    v.ensure(
        !bad_user,
        &key("user"),
        "user must be non-empty, without ':' or control characters",
    )?;
    v.ensure(
        !a.password.is_empty(),
        &key("password"),
        format!("password is empty; remove [{table}.auth] to turn authentication off"),
    )?;
    v.ensure(
        !a.password.chars().any(char::is_control),
        &key("password"),
        "password must not contain control characters",
    )?;
    Ok(RtspAuth {
        user: a.user.clone(),
        password: a.password.clone(),
    })
}

fn http(
    v: &Validator<'_>,
    h: &RawHttp,
    rtsp_auth: Option<&RtspAuth>,
) -> Result<HttpConfig, ConfigError> {
    let listen = at(&[Seg::Key("http")], "listen");
    v.ensure(
        h.listen.port() != 0,
        &listen,
        "port 0 is not allowed; use 1-65535",
    )?;
    v.ensure(
        h.listen.ip().is_loopback() || h.allow_non_loopback,
        &listen,
        format!(
            "{} is not a loopback address; set http.allow_non_loopback = true to expose the status endpoint",
            h.listen
        ),
    )?;
    let auth = match &h.auth {
        Some(a) => Some(credentials(v, "http", a)?),
        None if !h.listen.ip().is_loopback() => Some(rtsp_auth.cloned().ok_or_else(|| {
            v.error(
                &listen,
                format!(
                    "{} is beyond loopback: the page, its events and WHEP need credentials; \
                     set [http.auth] user and password (or [rtsp.auth], used when [http.auth] is absent)",
                    h.listen
                ),
            )
        })?),
        None => None,
    };
    let stun_server = match &h.stun_server {
        None => None,
        Some(s) => {
            let ok = s
                .strip_prefix("stun://")
                .and_then(|rest| rest.rsplit_once(':'))
                .is_some_and(|(host, port)| {
                    !host.is_empty()
                        && host
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
                        && port.parse::<u16>().is_ok_and(|p| p != 0)
                });
            v.ensure(
                ok,
                &at(&[Seg::Key("http")], "stun_server"),
                format!("{s:?} is not stun://host:port"),
            )?;
            Some(s.clone())
        }
    };
    v.ensure(
        h.max_listeners <= 64,
        &at(&[Seg::Key("http")], "max_listeners"),
        format!(
            "{} is too many; use 0-64 (0 turns WHEP off)",
            h.max_listeners
        ),
    )?;
    Ok(HttpConfig {
        listen: h.listen,
        allow_non_loopback: h.allow_non_loopback,
        auth,
        max_listeners: h.max_listeners as usize,
        stun_server,
    })
}

fn health(v: &Validator<'_>, h: &RawHealth) -> Result<HealthConfig, ConfigError> {
    let key = |k| at(&[Seg::Key("health")], k);
    v.ensure(
        (100..=600_000).contains(&h.stall_timeout_ms),
        &key("stall_timeout_ms"),
        "must be between 100 and 600000",
    )?;
    let dbfs = h.silence_threshold_dbfs;
    v.ensure(
        dbfs.is_finite() && (-150.0..=0.0).contains(&dbfs),
        &key("silence_threshold_dbfs"),
        "must be between -150 and 0 dBFS",
    )?;
    v.ensure(
        (20..=10_000).contains(&h.level_interval_ms),
        &key("level_interval_ms"),
        "must be between 20 and 10000",
    )?;
    // A stall is detected from missing level readings: with readings at most half
    // the stall timeout apart, one late reading is not yet a stall.
    let (interval, stall) = (h.level_interval_ms, h.stall_timeout_ms);
    let blame =
        if v.is_written(&key("level_interval_ms")) || !v.is_written(&key("stall_timeout_ms")) {
            key("level_interval_ms")
        } else {
            key("stall_timeout_ms")
        };
    v.ensure(
        interval.saturating_mul(2) <= stall,
        &blame,
        format!(
            "health.level_interval_ms = {interval} must be at most half of \
             health.stall_timeout_ms = {stall} (at most {}): a stall is detected from \
             missing level readings",
            stall / 2
        ),
    )?;
    Ok(HealthConfig {
        stall_timeout: Duration::from_millis(stall),
        silence_threshold_dbfs: dbfs,
        silence_after: Duration::from_secs(h.silence_after_s),
        level_interval: Duration::from_millis(interval),
    })
}

fn restart(v: &Validator<'_>, r: &RawRestart) -> Result<RestartConfig, ConfigError> {
    let key = |k| at(&[Seg::Key("restart")], k);
    v.ensure(
        (10..=60_000).contains(&r.initial_ms),
        &key("initial_ms"),
        "must be between 10 and 60000",
    )?;
    v.ensure(
        r.initial_ms <= r.max_ms && r.max_ms <= 3_600_000,
        &key("max_ms"),
        "must be at least restart.initial_ms and at most 3600000",
    )?;
    Ok(RestartConfig {
        initial: Duration::from_millis(r.initial_ms),
        max: Duration::from_millis(r.max_ms),
        reset_after: Duration::from_secs(r.reset_after_s),
    })
}

fn deadman(v: &Validator<'_>, d: &RawDeadman) -> Result<DeadmanConfig, ConfigError> {
    let key = |k| at(&[Seg::Key("deadman")], k);
    v.ensure(
        (1..=100).contains(&d.max_reboots),
        &key("max_reboots"),
        "must be between 1 and 100 (set enabled = false for no reboots at all)",
    )?;
    v.ensure(
        (60..=30 * 86_400).contains(&d.window_s),
        &key("window_s"),
        "must be between 60 and 2592000 (30 days)",
    )?;
    v.ensure(
        d.min_spacing_s <= d.window_s,
        &key("min_spacing_s"),
        "must not be longer than deadman.window_s",
    )?;
    for (k, value) in [
        ("unhealthy_after_s", d.unhealthy_after_s),
        ("good_after_s", d.good_after_s),
    ] {
        v.ensure(
            (1..=7 * 86_400).contains(&value),
            &key(k),
            "must be between 1 and 604800 (7 days)",
        )?;
    }
    Ok(DeadmanConfig {
        enabled: d.enabled,
        policy: super::RebootPolicy {
            max_reboots: d.max_reboots,
            window_s: d.window_s,
            min_spacing_s: d.min_spacing_s,
        },
        unhealthy_after: Duration::from_secs(d.unhealthy_after_s),
        good_after: Duration::from_secs(d.good_after_s),
        reboot: d.reboot,
    })
}

fn recording(
    v: &Validator<'_>,
    r: &RawRecording,
    state_dir: &Path,
) -> Result<RecordingConfig, ConfigError> {
    let key = |k| at(&[Seg::Key("recording")], k);
    let directory = match &r.directory {
        None => state_dir.join("recordings"),
        Some(d) => {
            v.ensure(
                d.is_absolute() && !d.as_os_str().is_empty(),
                &key("directory"),
                format!("{} is not an absolute path", d.display()),
            )?;
            d.clone()
        }
    };
    v.ensure(
        (10..=86_400).contains(&r.segment_s),
        &key("segment_s"),
        "must be between 10 and 86400 (a day)",
    )?;
    v.ensure(
        r.keep_days <= 36_500,
        &key("keep_days"),
        "must be at most 36500 (0 keeps recordings whatever their age)",
    )?;
    v.ensure(
        r.max_bytes == 0 || r.max_bytes >= 1024 * 1024,
        &key("max_bytes"),
        format!(
            "{} bytes cannot hold a segment; use 0 (no cap) or at least 1048576 (1 MiB)",
            r.max_bytes
        ),
    )?;
    Ok(RecordingConfig {
        directory,
        segment: Duration::from_secs(r.segment_s),
        keep_days: r.keep_days,
        max_bytes: r.max_bytes,
        min_free_bytes: r.min_free_bytes,
        trust_clock: r.trust_clock,
    })
}

//! `/metrics`: the Prometheus text exposition format 0.0.4, built afresh from
//! each snapshot.

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use std::sync::Arc;

use super::Context;
use crate::state::{RecorderState, Snapshot, StreamState};

pub(super) fn metrics(snap: &Snapshot, ctx: &Context) -> Result<String, prometheus::Error> {
    let reg = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        reg.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let int_gauge =
        |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            reg.register(Box::new(g.clone()))?;
            Ok(g)
        };
    let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), &["stream"])?;
        reg.register(Box::new(c.clone()))?;
        Ok(c)
    };
    int_gauge("hark_build_info", "harkd version (always 1).", &["version"])?
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    gauge("hark_uptime_seconds", "Seconds since harkd started.", &[])?
        .with_label_values(&[] as &[&str])
        .set(ctx.started.elapsed().as_secs_f64());
    let d = &snap.deadman;
    int_gauge(
        "hark_deadman_state",
        "The reboot deadman's state (1 for the current one): disabled, armed, locked, \
         refusing, rebooting, error.",
        &["state"],
    )?
    .with_label_values(&[d.state.as_str()])
    .set(1);
    int_gauge(
        "hark_deadman_reboots_in_window",
        "Reboots the deadman asked for within its window.",
        &[],
    )?
    .with_label_values(&[] as &[&str])
    .set(i64::from(d.reboots_in_window));
    int_gauge(
        "hark_deadman_reboot_limit",
        "The most reboots the deadman may ask for within its window (0 when disabled).",
        &[],
    )?
    .with_label_values(&[] as &[&str])
    .set(i64::from(d.max_reboots));
    // Only when a bus was asked for: with `--bus none` there is nothing to alert on.
    if snap.bus.wanted.is_some() {
        int_gauge(
            "hark_dbus_connected",
            "1 when org.hark.Agent1 is served on the bus harkd was asked to use \
             (streams do not depend on it).",
            &[],
        )?
        .with_label_values(&[] as &[&str])
        .set(i64::from(
            snap.bus.state == crate::state::BusState::Connected,
        ));
        let c = IntCounterVec::new(
            Opts::new(
                "hark_dbus_reconnects_total",
                "Times harkd connected to the bus again after losing it.",
            ),
            &[],
        )?;
        reg.register(Box::new(c.clone()))?;
        c.with_label_values(&[] as &[&str])
            .inc_by(snap.bus.reconnects);
    }
    let running = int_gauge(
        "hark_stream_running",
        "1 when the stream's audio is flowing.",
        &["stream"],
    )?;
    let state = int_gauge(
        "hark_stream_state",
        "The stream's state (1 for the current one): starting, running, stalled, failed.",
        &["stream", "state"],
    )?;
    let clients = int_gauge(
        "hark_stream_clients",
        "RTSP clients attached to the stream.",
        &["stream"],
    )?;
    let silent = int_gauge(
        "hark_stream_silent",
        "1 when the stream has been silent for the configured time.",
        &["stream"],
    )?;
    let peak = gauge(
        "hark_stream_peak_dbfs",
        "Peak level of the loudest channel, dBFS.",
        &["stream"],
    )?;
    let rms = gauge(
        "hark_stream_rms_dbfs",
        "RMS level of the loudest channel, dBFS.",
        &["stream"],
    )?;
    let restarts = counter("hark_stream_restarts_total", "Capture pipeline restarts.")?;
    let stalls = counter("hark_stream_stalls_total", "Times audio stopped flowing.")?;
    let failures = counter("hark_stream_failures_total", "Capture pipeline errors.")?;
    let bytes = counter(
        "hark_stream_bytes_sent_total",
        "Encoded audio bytes handed to the stream's clients.",
    )?;
    for s in &snap.streams {
        let l = [s.name.as_str()];
        running.with_label_values(&l).set(i64::from(s.running()));
        for st in StreamState::ALL {
            state
                .with_label_values(&[s.name.as_str(), st.as_str()])
                .set(i64::from(s.state == st));
        }
        clients
            .with_label_values(&l)
            .set(i64::try_from(s.clients).unwrap_or(i64::MAX));
        silent.with_label_values(&l).set(i64::from(s.silent));
        if let Some(p) = s.peak_dbfs {
            peak.with_label_values(&l).set(p);
        }
        if let Some(r) = s.rms_dbfs {
            rms.with_label_values(&l).set(r);
        }
        restarts.with_label_values(&l).inc_by(s.restarts);
        stalls.with_label_values(&l).inc_by(s.stalls);
        failures.with_label_values(&l).inc_by(s.failures);
        bytes.with_label_values(&l).inc_by(s.bytes_sent);
    }
    let info = int_gauge(
        "hark_device_info",
        "A sound card harkd has seen (always 1).",
        &["card", "name", "status", "vendor_product", "serial", "port"],
    )?;
    for d in &snap.devices {
        let card = d.card.to_string();
        info.with_label_values(&[
            card.as_str(),
            d.name.as_deref().unwrap_or(""),
            d.status.as_str(),
            d.vendor_product.as_deref().unwrap_or(""),
            d.serial.as_deref().unwrap_or(""),
            d.port.as_deref().unwrap_or(""),
        ])
        .set(1);
    }
    group_metrics(&reg, snap)?;
    recording_metrics(&reg, snap)?;
    alert_metrics(&reg, &ctx.alerts)?;
    let mut buf = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Per recorded stream: state, bytes, segments; the disk: free, room, deleted.
fn recording_metrics(reg: &Registry, snap: &Snapshot) -> Result<(), prometheus::Error> {
    let Some(rec) = &snap.recording else {
        return Ok(());
    };
    let int_gauge =
        |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            reg.register(Box::new(g.clone()))?;
            Ok(g)
        };
    let counter =
        |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            reg.register(Box::new(c.clone()))?;
            Ok(c)
        };
    let state = int_gauge(
        "hark_recording_state",
        "The stream's recorder (1 for the current state): recording, waiting (for audio), \
         paused (a full disk or a write error; see /api/v1/status for why).",
        &["stream", "state"],
    )?;
    let written = counter(
        "hark_recording_bytes_written_total",
        "Bytes of recordings written since harkd started.",
        &["stream"],
    )?;
    let started = counter(
        "hark_recording_segments_started_total",
        "Recording segments started since harkd started.",
        &["stream"],
    )?;
    let disk = int_gauge(
        "hark_recording_disk_bytes",
        "Bytes of the stream's segments on disk (at the last retention pass).",
        &["stream"],
    )?;
    let segments = int_gauge(
        "hark_recording_segments",
        "The stream's segments on disk (at the last retention pass).",
        &["stream"],
    )?;
    for (name, r) in &rec.streams {
        let l = [name.as_str()];
        for st in [
            RecorderState::Recording,
            RecorderState::Waiting,
            RecorderState::Paused,
        ] {
            state
                .with_label_values(&[name.as_str(), st.as_str()])
                .set(i64::from(r.state == st));
        }
        written.with_label_values(&l).inc_by(r.bytes_written);
        started.with_label_values(&l).inc_by(r.segments_started);
        disk.with_label_values(&l)
            .set(i64::try_from(r.on_disk.disk_bytes).unwrap_or(i64::MAX));
        segments
            .with_label_values(&l)
            .set(i64::try_from(r.on_disk.segments).unwrap_or(i64::MAX));
    }
    let none: &[&str] = &[];
    int_gauge(
        "hark_recording_free_bytes",
        "Free bytes on the recording filesystem.",
        none,
    )?
    .with_label_values(none)
    .set(i64::try_from(rec.disk.free_bytes).unwrap_or(i64::MAX));
    int_gauge(
        "hark_recording_space_ok",
        "0 when recording.min_free_bytes cannot be kept and recording pauses.",
        none,
    )?
    .with_label_values(none)
    .set(i64::from(rec.disk.space_ok));
    counter(
        "hark_recording_deleted_total",
        "Segments retention deleted since harkd started.",
        none,
    )?
    .with_label_values(none)
    .inc_by(rec.disk.deleted);
    Ok(())
}

/// Per `[[alert]]` webhook: sent, failed, dropped, retried, queued.
fn alert_metrics(
    reg: &Registry,
    alerts: &[Arc<crate::alerts::send::Stats>],
) -> Result<(), prometheus::Error> {
    if alerts.is_empty() {
        return Ok(());
    }
    let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), &["alert"])?;
        reg.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let sent = counter(
        "hark_alerts_sent_total",
        "Alerts the webhook accepted (2xx).",
    )?;
    let failed = counter(
        "hark_alerts_failed_total",
        "Alerts given up on: retries used up, refused by the webhook, or the webhook not usable.",
    )?;
    let dropped = counter(
        "hark_alerts_dropped_total",
        "Alerts dropped because the webhook's queue was full.",
    )?;
    let retries = counter(
        "hark_alerts_retries_total",
        "Requests sent again after a failure.",
    )?;
    let queued = IntGaugeVec::new(
        Opts::new("hark_alerts_queued", "Alerts waiting to be sent."),
        &["alert"],
    )?;
    reg.register(Box::new(queued.clone()))?;
    for a in alerts {
        let v = a.view();
        let l = [v.name.as_str()];
        sent.with_label_values(&l).inc_by(v.sent);
        failed.with_label_values(&l).inc_by(v.failed);
        dropped.with_label_values(&l).inc_by(v.dropped);
        retries.with_label_values(&l).inc_by(v.retries);
        queued
            .with_label_values(&l)
            .set(i64::try_from(v.queued).unwrap_or(i64::MAX));
    }
    Ok(())
}

/// Per group member: present, latency, rate, underruns, resyncs; per group:
/// clipped samples.
fn group_metrics(reg: &Registry, snap: &Snapshot) -> Result<(), prometheus::Error> {
    let groups: Vec<_> = snap
        .streams
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.group.as_ref()?)))
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    let labels = &["group", "member"];
    let gauge = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        reg.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let counter = |name: &str, help: &str, labels: &[&str]| {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        reg.register(Box::new(c.clone()))?;
        Ok::<_, prometheus::Error>(c)
    };
    let present = gauge(
        "hark_group_member_present",
        "1 when the member's audio is in its group.",
    )?;
    let latency = gauge(
        "hark_group_member_latency_seconds",
        "How far behind the member's capture its group reads it (mean over a second).",
    )?;
    let rate = gauge(
        "hark_group_member_rate_ppm",
        "How much faster (+) or slower (-) than nominal the group reads the member's clock.",
    )?;
    let underruns = counter(
        "hark_group_member_underruns_total",
        "Times the member's queue ran dry (silence until refilled).",
        labels,
    )?;
    let resyncs = counter(
        "hark_group_member_resyncs_total",
        "Times the member's queue grew past 500 ms and was cut back.",
        labels,
    )?;
    let clipped = counter(
        "hark_group_clipped_samples_total",
        "Samples of the group clamped at full scale.",
        &["group"],
    )?;
    for (name, g) in groups {
        clipped.with_label_values(&[name]).inc_by(g.clipped_samples);
        for m in &g.members {
            let l = [name, m.name.as_str()];
            present
                .with_label_values(&l)
                .set(f64::from(u8::from(m.present)));
            if let Some(ms) = m.latency_ms {
                latency.with_label_values(&l).set(ms / 1000.0);
            }
            rate.with_label_values(&l).set(m.rate_ppm);
            underruns.with_label_values(&l).inc_by(m.underruns);
            resyncs.with_label_values(&l).inc_by(m.resyncs);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use super::*;
    use crate::http::unhealthy;
    use crate::state::{DeviceState, DeviceStatus};

    #[test]
    fn hostile_label_values_are_escaped() {
        let snap = Snapshot {
            streams: vec![],
            devices: vec![DeviceStatus {
                card: 3,
                status: DeviceState::Streaming,
                name: Some("mic".into()),
                reason: None,
                vendor_product: Some("0d8c:0014".into()),
                serial: Some("a\"b\\c\nd ü".into()),
                manufacturer: None,
                product: None,
                port: Some("1-1.4".into()),
                card_id: "mic".into(),
                formats: vec!["S16_LE".into()],
                rates: vec![48_000],
                channels: 1,
            }],
            deadman: Default::default(),
            pending_restart: vec![],
            bus: Default::default(),
            recording: None,
        };
        let (_tx, rx) = watch::channel(Snapshot::default());
        let ctx = Context::new(rx, 8554);
        let text = metrics(&snap, &ctx).unwrap();
        assert!(text.contains(r#"serial="a\"b\\c\nd ü""#), "{text}");
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let info = scrape
            .samples
            .iter()
            .find(|s| s.metric == "hark_device_info")
            .unwrap();
        assert_eq!(info.labels.get("card"), Some("3"));
        assert_eq!(info.labels.get("port"), Some("1-1.4"));
    }

    #[test]
    fn no_streams_is_healthy() {
        assert_eq!(unhealthy(&Snapshot::default()), None);
    }

    #[test]
    fn the_bus_gauge_is_there_only_when_a_bus_is_wanted() {
        let (_tx, rx) = watch::channel(Snapshot::default());
        let ctx = Context::new(rx, 8554);
        let mut snap = Snapshot::default();
        let text = metrics(&snap, &ctx).unwrap();
        assert!(!text.contains("hark_dbus_connected"), "{text}");
        snap.bus = crate::state::BusStatus::connecting(crate::state::BusKind::System);
        snap.bus.reconnects = 2;
        // A bus that is down does not make the agent unhealthy.
        assert_eq!(unhealthy(&snap), None);
        let text = metrics(&snap, &ctx).unwrap();
        assert!(text.contains("\nhark_dbus_connected 0\n"), "{text}");
        assert!(text.contains("\nhark_dbus_reconnects_total 2\n"), "{text}");
        snap.bus.state = crate::state::BusState::Connected;
        let text = metrics(&snap, &ctx).unwrap();
        assert!(text.contains("\nhark_dbus_connected 1\n"), "{text}");
    }
}

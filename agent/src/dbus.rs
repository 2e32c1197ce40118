//! The D-Bus view of the agent (zbus): `org.hark.Agent1` at `/org/hark/Agent1`
//! with the standard ObjectManager, and one `org.hark.Device1` object per stream
//! at `/org/hark/Agent1/device/<escaped name>`.
//!
//! Owns: the bus connection and the exported objects, which mirror the
//! supervisor's snapshot (nothing here is the source of truth). Methods hand
//! their work to the supervisor through its event channel. Objects are served
//! before the well-known name is requested, so a client that sees the name finds
//! the objects. Level properties change on the bus at most once a second.
//!
//! Streams never depend on the bus: [`serve`] connects when it can, retries
//! with backoff while it cannot, and starts over on a fresh connection (every
//! object served again, `InterfacesAdded` sent again) when the bus goes away.
//! Its state reaches the snapshot as [`BusStatus`] through the supervisor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use zbus::object_server::SignalEmitter;
use zbus::{connection, interface};

use crate::backoff::Backoff;
use crate::state::{
    BusState, BusStatus, DiskStatus, GroupStatus, RecorderStatus, Snapshot, StreamStatus,
};
use crate::supervisor::Event;

pub const BUS_NAME: &str = "org.hark.Agent1";
pub const ROOT: &str = "/org/hark/Agent1";

/// Which bus to use.
pub use crate::state::BusKind as Bus;

/// Retries while the bus cannot be had: 0.5 s doubling to 10 s (with jitter).
const RETRY: Backoff = Backoff {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(10),
};
/// One connection attempt (connect, authenticate, serve, take the name) at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that lasted this long resets the retry delays.
const STABLE: Duration = Duration::from_secs(30);
/// Closing a connection the agent gives up on (the bus may not answer).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors returned to D-Bus callers, as `org.hark.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.hark.Error")]
pub enum HarkError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// There is no stream by that name.
    NoSuchStream(String),
    /// The agent is shutting down.
    Unavailable(String),
    /// The configuration file was refused; the running one is kept.
    InvalidConfig(String),
}

/// `/org/hark/Agent1/device/<name>`, with every byte outside `[A-Za-z0-9]`
/// escaped as `_xx` (so `garden-2` becomes `garden_2d2`).
pub fn device_path(name: &str) -> String {
    let mut p = format!("{ROOT}/device/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(char::from(b));
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

struct Agent {
    snap: Snapshot,
    rtsp_url_base: String,
    events: mpsc::Sender<Event>,
}

/// The hark microphone agent.
#[interface(name = "org.hark.Agent1")]
impl Agent {
    /// The version of harkd.
    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// "running" when every stream runs, "degraded" otherwise.
    #[zbus(property)]
    fn state(&self) -> String {
        if crate::http::unhealthy(&self.snap).is_none() {
            "running".into()
        } else {
            "degraded".into()
        }
    }

    /// How many streams are configured or discovered.
    #[zbus(property)]
    fn stream_count(&self) -> u32 {
        u32::try_from(self.snap.streams.len()).unwrap_or(u32::MAX)
    }

    /// The start of every stream's URL, e.g. "rtsp://<host>:8554/".
    #[zbus(property)]
    fn rtsp_url_base(&self) -> String {
        self.rtsp_url_base.clone()
    }

    /// A one-line summary, as in systemctl status.
    #[zbus(property)]
    fn summary(&self) -> String {
        self.snap.summary()
    }

    /// The reboot deadman: "disabled", "armed", "locked" (no reboot until a good
    /// boot is marked), "refusing" (a reboot was wanted and the ledger said no),
    /// "rebooting" or "error".
    #[zbus(property)]
    fn deadman_state(&self) -> String {
        self.snap.deadman.state.as_str().to_string()
    }

    /// Reboots the deadman has asked for within its window.
    #[zbus(property)]
    fn reboots_in_window(&self) -> u32 {
        self.snap.deadman.reboots_in_window
    }

    /// The most reboots the deadman may ask for within its window.
    #[zbus(property)]
    fn reboot_limit(&self) -> u32 {
        self.snap.deadman.max_reboots
    }

    /// Why the deadman is locked or refusing ("" when there is nothing to say).
    #[zbus(property)]
    fn deadman_detail(&self) -> String {
        self.snap.deadman.detail.clone().unwrap_or_default()
    }

    /// Re-read the configuration file and apply the difference; streams whose
    /// settings did not change are not disturbed. Returns what changed, and
    /// names every changed key that takes effect only when harkd restarts
    /// ("streams 1 added; restart harkd to apply rtsp"). A configuration that
    /// is refused is an org.hark.Error.InvalidConfig, saying why.
    async fn reload(&self) -> Result<String, HarkError> {
        let gone = || HarkError::Unavailable("the agent is shutting down".into());
        let (reply, wait) = oneshot::channel();
        self.events
            .send(Event::Reload { reply: Some(reply) })
            .await
            .map_err(|_| gone())?;
        let report = wait.await.map_err(|_| gone())?;
        match report.refused {
            Some(why) => Err(HarkError::InvalidConfig(why)),
            None => Ok(report.summary()),
        }
    }

    /// Changed configuration keys waiting for a restart of harkd.
    #[zbus(property)]
    fn pending_restart(&self) -> Vec<String> {
        self.snap.pending_restart.clone()
    }

    /// Restart one stream's capture pipeline now.
    async fn restart_stream(&self, name: String) -> Result<(), HarkError> {
        let (reply, wait) = oneshot::channel();
        self.events
            .send(Event::RestartStream {
                name: name.clone(),
                reply,
            })
            .await
            .map_err(|_| HarkError::Unavailable("the agent is shutting down".into()))?;
        match wait.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(HarkError::NoSuchStream(format!("no stream named {name:?}"))),
            Err(_) => Err(HarkError::Unavailable("the agent is shutting down".into())),
        }
    }
}

/// One stream and, for discovered microphones, its device.
#[derive(Clone, Default)]
struct Device {
    s: StreamStatus,
    url: String,
    serial: String,
    vendor_id: u16,
    product_id: u16,
    port_path: String,
    card_id: String,
    formats: Vec<String>,
    rates: Vec<u32>,
    channels: u32,
    peak: f64,
    rms: f64,
}

impl Device {
    fn stream(&self) -> &StreamStatus {
        &self.s
    }
}

/// A stream served at rtsp://<host>:<port>/<Name>, and the microphone it captures.
#[interface(name = "org.hark.Device1")]
impl Device {
    /// The stream name (the last part of the URL).
    #[zbus(property)]
    fn name(&self) -> String {
        self.stream().name.clone()
    }
    /// The device's serial number ("" when it has none usable).
    #[zbus(property)]
    fn serial(&self) -> String {
        self.serial.clone()
    }
    /// USB vendor id (0 for streams that are not a USB device).
    #[zbus(property)]
    fn vendor_id(&self) -> u16 {
        self.vendor_id
    }
    /// USB product id.
    #[zbus(property)]
    fn product_id(&self) -> u16 {
        self.product_id
    }
    /// The USB port, as the kernel names it ("1-1.4").
    #[zbus(property)]
    fn port_path(&self) -> String {
        self.port_path.clone()
    }
    /// ALSA card index (-1 when the stream is not a sound card).
    #[zbus(property)]
    fn card(&self) -> i32 {
        self.stream()
            .card
            .map_or(-1, |c| i32::try_from(c).unwrap_or(-1))
    }
    /// ALSA card id (pinned to the name when possible).
    #[zbus(property)]
    fn card_id(&self) -> String {
        self.card_id.clone()
    }
    /// Sample formats the device captures in.
    #[zbus(property)]
    fn formats(&self) -> Vec<String> {
        self.formats.clone()
    }
    /// Sample rates the device captures at (a range is given by its ends).
    #[zbus(property)]
    fn rates(&self) -> Vec<u32> {
        self.rates.clone()
    }
    /// Most channels the device captures.
    #[zbus(property)]
    fn channels(&self) -> u32 {
        self.channels
    }
    /// The stream's URL.
    #[zbus(property)]
    fn stream_url(&self) -> String {
        self.url.clone()
    }
    /// starting, running, stalled or failed.
    #[zbus(property)]
    fn stream_state(&self) -> String {
        self.stream().state.as_str().to_string()
    }
    /// The codec the stream is encoded with.
    #[zbus(property)]
    fn codec(&self) -> String {
        self.stream().codec.to_string()
    }
    /// The stream's sample rate in Hz.
    #[zbus(property)]
    fn sample_rate(&self) -> u32 {
        self.stream().sample_rate
    }
    /// RTSP clients attached.
    #[zbus(property)]
    fn clients(&self) -> u32 {
        u32::try_from(self.stream().clients).unwrap_or(u32::MAX)
    }
    /// Peak level of the loudest channel, dBFS (-200 when unknown; updated at
    /// most once a second).
    #[zbus(property)]
    fn peak_dbfs(&self) -> f64 {
        self.peak
    }
    /// RMS level of the loudest channel, dBFS (-200 when unknown; at most 1 Hz).
    #[zbus(property)]
    fn rms_dbfs(&self) -> f64 {
        self.rms
    }
    /// True when the stream has been silent for the configured time.
    #[zbus(property)]
    fn silent(&self) -> bool {
        self.stream().silent
    }
    /// The last error, "" when none.
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.stream().last_error.clone().unwrap_or_default()
    }
}

/// A group's own view, served beside its `Device1` (groups only).
#[derive(Clone, Default, PartialEq)]
struct Group {
    g: GroupStatus,
}

/// A group of microphones mixed or merged into one stream (`[[group]]`).
#[interface(name = "org.hark.Group1")]
impl Group {
    /// "mix" (members summed) or "merge" (each member on channels of its own).
    #[zbus(property)]
    fn mode(&self) -> String {
        self.g.mode.to_string()
    }
    /// Channels the group stream carries.
    #[zbus(property)]
    fn channels(&self) -> u32 {
        self.g.channels
    }
    /// The channel map, in member order: (member, first channel (0-based),
    /// channels, present). In a mix every member is on every channel (first 0).
    #[zbus(property)]
    fn members(&self) -> Vec<(String, u32, u32, bool)> {
        self.g
            .members
            .iter()
            .map(|m| (m.name.clone(), m.first_channel, m.channels, m.present))
            .collect()
    }
    /// Members present now.
    #[zbus(property)]
    fn members_present(&self) -> u32 {
        self.g.members.iter().filter(|m| m.present).count() as u32
    }
    /// How far behind each member's capture the group reads it, in ms (-1 when
    /// absent), in member order.
    #[zbus(property)]
    fn member_latency_ms(&self) -> Vec<f64> {
        self.g
            .members
            .iter()
            .map(|m| m.latency_ms.unwrap_or(-1.0))
            .collect()
    }
    /// Peak level per group channel, dBFS (updated at most once a second).
    #[zbus(property)]
    fn channel_peak_dbfs(&self) -> Vec<f64> {
        self.g.peak_dbfs.clone()
    }
    /// RMS level per group channel, dBFS (updated at most once a second).
    #[zbus(property)]
    fn channel_rms_dbfs(&self) -> Vec<f64> {
        self.g.rms_dbfs.clone()
    }
    /// Samples clamped at full scale (a mix with member gains above 0 dB).
    #[zbus(property)]
    fn clipped_samples(&self) -> u64 {
        self.g.clipped_samples
    }
}

/// A recorded stream's recorder, served beside its `Device1` while it records.
#[derive(Clone, PartialEq)]
struct Recording {
    r: RecorderStatus,
    disk: DiskStatus,
}

/// Recording the stream to local files (`record = true`; see `[recording]`).
#[interface(name = "org.hark.Recording1")]
impl Recording {
    /// "recording", "waiting" (for the stream's audio) or "paused" (a full
    /// disk or a write error: see Reason; it resumes by itself).
    #[zbus(property)]
    fn state(&self) -> String {
        self.r.state.as_str().to_string()
    }
    /// Why it is paused; "" otherwise.
    #[zbus(property)]
    fn reason(&self) -> String {
        self.r.reason.clone()
    }
    /// The segment being written (a file name), "" when none.
    #[zbus(property)]
    fn file(&self) -> String {
        self.r.file.clone().unwrap_or_default()
    }
    /// Bytes written since harkd started (updated at most every 5 s).
    #[zbus(property)]
    fn bytes_written(&self) -> u64 {
        self.r.bytes_written
    }
    /// The stream's segments on disk at the last retention pass.
    #[zbus(property)]
    fn segments(&self) -> u64 {
        self.r.on_disk.segments
    }
    /// Their bytes on disk at the last retention pass.
    #[zbus(property)]
    fn disk_bytes(&self) -> u64 {
        self.r.on_disk.disk_bytes
    }
    /// The oldest segment's file name ("" when none).
    #[zbus(property)]
    fn oldest_segment(&self) -> String {
        self.r.on_disk.oldest.clone().unwrap_or_default()
    }
    /// The newest segment's file name ("" when none).
    #[zbus(property)]
    fn newest_segment(&self) -> String {
        self.r.on_disk.newest.clone().unwrap_or_default()
    }
    /// The recording directory.
    #[zbus(property)]
    fn directory(&self) -> String {
        self.disk.directory.clone()
    }
    /// Free bytes on the recording directory's filesystem.
    #[zbus(property)]
    fn free_bytes(&self) -> u64 {
        self.disk.free_bytes
    }
}

/// Adds, updates and removes `Recording1` beside the `Device1` objects.
async fn mirror_recordings(
    server: &zbus::ObjectServer,
    snap: &Snapshot,
    exported: &mut BTreeMap<String, Recording>,
) -> zbus::Result<()> {
    let mut wanted: BTreeMap<&str, Recording> = BTreeMap::new();
    if let Some(rec) = &snap.recording {
        for (name, r) in &rec.streams {
            if snap.streams.iter().any(|s| s.name == *name) {
                wanted.insert(
                    name,
                    Recording {
                        r: r.clone(),
                        disk: DiskStatus {
                            streams: BTreeMap::new(),
                            ..rec.disk.clone()
                        },
                    },
                );
            }
        }
    }
    let gone: Vec<String> = exported
        .keys()
        .filter(|n| !wanted.contains_key(n.as_str()))
        .cloned()
        .collect();
    for name in gone {
        exported.remove(&name);
        server
            .remove::<Recording, _>(device_path(&name).as_str())
            .await?;
    }
    for (name, new) in wanted {
        let path = device_path(name);
        match exported.get(name) {
            None => {
                server.at(path.as_str(), new.clone()).await?;
            }
            Some(old) if *old == new => continue,
            Some(_) => {
                let iface = server.interface::<_, Recording>(path.as_str()).await?;
                *iface.get_mut().await = new.clone();
                let em = iface.signal_emitter();
                let r = iface.get().await;
                r.state_changed(em).await?;
                r.reason_changed(em).await?;
                r.file_changed(em).await?;
                r.bytes_written_changed(em).await?;
                r.segments_changed(em).await?;
                r.disk_bytes_changed(em).await?;
                r.oldest_segment_changed(em).await?;
                r.newest_segment_changed(em).await?;
                r.directory_changed(em).await?;
                r.free_bytes_changed(em).await?;
            }
        }
        exported.insert(name.to_string(), new);
    }
    Ok(())
}

/// Builds a Device from the snapshot (stream plus its card, if any).
fn device_of(
    snap: &Snapshot,
    s: &StreamStatus,
    url_base: &str,
    levels: Option<(f64, f64)>,
) -> Device {
    let dev = s
        .card
        .and_then(|c| snap.devices.iter().find(|d| d.card == c));
    let (vendor_id, product_id) = dev
        .and_then(|d| d.vendor_product.as_deref())
        .and_then(crate::config::parse_vendor_product)
        .unwrap_or((0, 0));
    let (peak, rms) =
        levels.unwrap_or((s.peak_dbfs.unwrap_or(-200.0), s.rms_dbfs.unwrap_or(-200.0)));
    Device {
        s: s.clone(),
        url: format!("{url_base}{}", s.name),
        serial: dev.and_then(|d| d.serial.clone()).unwrap_or_default(),
        vendor_id,
        product_id,
        port_path: dev.and_then(|d| d.port.clone()).unwrap_or_default(),
        card_id: dev.map(|d| d.card_id.clone()).unwrap_or_default(),
        formats: dev.map(|d| d.formats.clone()).unwrap_or_default(),
        rates: dev.map(|d| d.rates.clone()).unwrap_or_default(),
        channels: dev.map_or(0, |d| d.channels),
        peak,
        rms,
    }
}

const LEVEL_EVERY: Duration = Duration::from_secs(1);

/// Keeps a group's `Group1` in step: membership at once, levels and latencies
/// with the stream's levels (at most once a second).
async fn mirror_group(
    server: &zbus::ObjectServer,
    path: &str,
    old: Option<&GroupStatus>,
    new: Option<&GroupStatus>,
    send_levels: bool,
) -> zbus::Result<()> {
    let Some(new) = new else { return Ok(()) };
    let Some(old) = old else {
        // The first reading of a group exported before it had one.
        server.at(path, Group { g: new.clone() }).await?;
        return Ok(());
    };
    let membership = |g: &GroupStatus| -> Vec<(String, u32, u32, bool)> {
        g.members
            .iter()
            .map(|m| (m.name.clone(), m.first_channel, m.channels, m.present))
            .collect()
    };
    let members_changed = membership(old) != membership(new) || old.mode != new.mode;
    if !members_changed && !send_levels {
        return Ok(());
    }
    let iface = server.interface::<_, Group>(path).await?;
    *iface.get_mut().await = Group { g: new.clone() };
    let em = iface.signal_emitter();
    let g = iface.get().await;
    if members_changed {
        g.members_changed(em).await?;
        g.members_present_changed(em).await?;
        g.channels_changed(em).await?;
        g.mode_changed(em).await?;
    }
    if send_levels {
        g.channel_peak_dbfs_changed(em).await?;
        g.channel_rms_dbfs_changed(em).await?;
        g.member_latency_ms_changed(em).await?;
        g.clipped_samples_changed(em).await?;
    }
    Ok(())
}

/// Connects, serves the root objects and takes the well-known name (in that
/// order). Call [`run`] next to keep the objects in step with the agent.
pub async fn connect(
    bus: Bus,
    snapshot: &watch::Receiver<Snapshot>,
    events: mpsc::Sender<Event>,
    rtsp_url_base: &str,
) -> zbus::Result<zbus::Connection> {
    let agent = Agent {
        snap: snapshot.borrow().clone(),
        rtsp_url_base: rtsp_url_base.to_string(),
        events,
    };
    let builder = match bus {
        Bus::System => connection::Builder::system()?,
        Bus::Session => connection::Builder::session()?,
    };
    // Objects first, name last: whoever sees the name finds the objects.
    builder
        .serve_at(ROOT, agent)?
        .serve_at(ROOT, zbus::fdo::ObjectManager)?
        .name(BUS_NAME)?
        .build()
        .await
}

/// Serves `org.hark.Agent1` for as long as the agent runs, whatever the bus
/// does: connects (objects, then the name), mirrors the snapshot, and when the
/// bus is not there or goes away, says so through `status`, logs it once per
/// outage, and connects again with backoff. Every connection starts afresh:
/// the root objects are served on it and the mirror begins from nothing, so
/// every stream's object is added (with `InterfacesAdded`) again.
///
/// A lost bus is seen by [`zbus::Connection::closed`]: zbus's socket reader
/// marks the connection closed as soon as a read fails or the socket reaches
/// end-of-file, which is what a dbus-daemon that exits or is killed leaves.
/// A mirror that fails to write to the bus ends the connection too.
///
/// Returns only when the snapshot channel closes, i.e. never while the agent
/// runs (it then waits forever: shutdown is under way).
pub async fn serve(
    bus: Bus,
    snapshot: watch::Receiver<Snapshot>,
    events: mpsc::Sender<Event>,
    rtsp_url_base: String,
    status: impl Fn(BusStatus),
) {
    let mut st = BusStatus::connecting(bus);
    status(st.clone());
    // Retries in this outage; after a loss it starts from the number of
    // connections in a row that did not last STABLE (a bus that drops us at
    // once is not retried in a tight loop).
    let mut attempt: u32 = 0;
    let mut short_lived: u32 = 0;
    // Whether this outage has been logged as a warning yet (a loss is logged
    // when it happens, so only an outage at start needs the flag).
    let mut warned = false;
    let mut connected_before = false;
    loop {
        let tried = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connect(bus, &snapshot, events.clone(), &rtsp_url_base),
        )
        .await;
        let conn = match tried {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                retry_later(
                    bus,
                    &mut st,
                    &status,
                    &mut warned,
                    &mut attempt,
                    e.to_string(),
                )
                .await;
                continue;
            }
            Err(_) => {
                let why = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs());
                retry_later(bus, &mut st, &status, &mut warned, &mut attempt, why).await;
                continue;
            }
        };
        let up = Instant::now();
        if connected_before {
            st.reconnects += 1;
        }
        connected_before = true;
        st.state = BusState::Connected;
        st.detail = None;
        status(st.clone());
        tracing::info!(
            bus = bus.as_str(),
            name = BUS_NAME,
            reconnects = st.reconnects,
            "D-Bus name taken"
        );
        let why = tokio::select! {
            r = run(conn.clone(), snapshot.clone(), rtsp_url_base.clone()) => match r {
                Ok(()) => {
                    // The supervisor is gone: the agent is shutting down.
                    std::future::pending::<()>().await;
                    return;
                }
                Err(e) => format!("mirroring onto the bus failed: {e}"),
            },
            () = conn.closed() => "the bus closed the connection".to_string(),
        };
        // Let go of the name and the socket before trying again (a bus that is
        // still there must not see two of us).
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close()).await;
        short_lived = if up.elapsed() >= STABLE {
            0
        } else {
            short_lived.saturating_add(1)
        };
        attempt = short_lived;
        st.state = BusState::Lost;
        tracing::warn!(
            bus = bus.as_str(),
            error = %why,
            "D-Bus connection lost; streams are not affected, reconnecting"
        );
        warned = true;
        st.detail = Some(why);
        status(st.clone());
        tokio::time::sleep(RETRY.delay(attempt, fastrand::f64())).await;
        attempt = attempt.saturating_add(1);
    }
}

/// A failed attempt: shown (and logged once per outage), then the backoff.
async fn retry_later(
    bus: Bus,
    st: &mut BusStatus,
    status: &impl Fn(BusStatus),
    warned: &mut bool,
    attempt: &mut u32,
    why: String,
) {
    let delay = RETRY.delay(*attempt, fastrand::f64());
    if *warned {
        tracing::debug!(bus = bus.as_str(), error = %why, retry_ms = delay.as_millis() as u64, "D-Bus still not available");
    } else {
        tracing::warn!(
            bus = bus.as_str(),
            error = %why,
            "D-Bus not available; streams run without it, retrying"
        );
        *warned = true;
    }
    st.detail = Some(why);
    status(st.clone());
    tokio::time::sleep(delay).await;
    *attempt = attempt.saturating_add(1);
}

/// Mirrors the snapshot onto the bus until the snapshot channel closes.
pub async fn run(
    conn: zbus::Connection,
    mut snapshot: watch::Receiver<Snapshot>,
    rtsp_url_base: String,
) -> zbus::Result<()> {
    let server = conn.object_server();
    let mut exported: BTreeMap<String, (Device, Instant)> = BTreeMap::new();
    let mut recordings: BTreeMap<String, Recording> = BTreeMap::new();
    loop {
        let snap = snapshot.borrow_and_update().clone();
        mirror(&conn, &snap, &rtsp_url_base, &mut exported).await?;
        mirror_recordings(server, &snap, &mut recordings).await?;
        let agent = server.interface::<_, Agent>(ROOT).await?;
        let changed = {
            let mut a = agent.get_mut().await;
            let old = std::mem::replace(&mut a.snap, snap);
            (
                old.streams.len() != a.snap.streams.len(),
                crate::http::unhealthy(&old).is_none() != crate::http::unhealthy(&a.snap).is_none(),
                old.summary() != a.snap.summary(),
                old.deadman != a.snap.deadman,
            )
        };
        {
            let a = agent.get().await;
            let em = agent.signal_emitter();
            if changed.0 {
                a.stream_count_changed(em).await?;
            }
            if changed.1 {
                a.state_changed(em).await?;
            }
            if changed.2 {
                a.summary_changed(em).await?;
            }
            if changed.3 {
                a.deadman_state_changed(em).await?;
                a.reboots_in_window_changed(em).await?;
                a.reboot_limit_changed(em).await?;
                a.deadman_detail_changed(em).await?;
            }
        }
        // Wait for the next change; levels are also re-sent on a 1 s tick.
        tokio::select! {
            // The agent changed: mirror it.
            r = snapshot.changed() => if r.is_err() { return Ok(()) },
            // Nothing else changed, but levels may be due.
            _ = tokio::time::sleep(LEVEL_EVERY) => {},
        }
    }
}

/// Adds, removes and updates Device1 objects to match the snapshot, emitting
/// PropertiesChanged for what changed (levels at most once a second).
async fn mirror(
    conn: &zbus::Connection,
    snap: &Snapshot,
    url_base: &str,
    exported: &mut BTreeMap<String, (Device, Instant)>,
) -> zbus::Result<()> {
    let server = conn.object_server();
    let wanted: BTreeMap<&str, &StreamStatus> =
        snap.streams.iter().map(|s| (s.name.as_str(), s)).collect();
    let gone: Vec<String> = exported
        .keys()
        .filter(|n| !wanted.contains_key(n.as_str()))
        .cloned()
        .collect();
    for name in gone {
        let path = device_path(&name);
        server.remove::<Device, _>(path.as_str()).await?;
        if let Some((d, _)) = exported.remove(&name)
            && d.s.group.is_some()
        {
            server.remove::<Group, _>(path.as_str()).await?;
        }
    }
    let now = Instant::now();
    for (name, s) in wanted {
        let path = device_path(name);
        match exported.get_mut(name) {
            None => {
                let d = device_of(snap, s, url_base, None);
                server.at(path.as_str(), d.clone()).await?;
                if let Some(g) = &s.group {
                    server.at(path.as_str(), Group { g: g.clone() }).await?;
                }
                exported.insert(name.to_string(), (d, now));
            }
            Some((old, levels_at)) => {
                let send_levels = now.duration_since(*levels_at) >= LEVEL_EVERY;
                let levels = if send_levels {
                    None
                } else {
                    Some((old.peak, old.rms))
                };
                let new = device_of(snap, s, url_base, levels);
                let iface = server.interface::<_, Device>(path.as_str()).await?;
                *iface.get_mut().await = new.clone();
                let em: &SignalEmitter<'_> = iface.signal_emitter();
                let d = iface.get().await;
                let (o, n) = (old.stream(), new.stream());
                if o.state != n.state {
                    d.stream_state_changed(em).await?;
                }
                if o.clients != n.clients {
                    d.clients_changed(em).await?;
                }
                if o.silent != n.silent {
                    d.silent_changed(em).await?;
                }
                if o.last_error != n.last_error {
                    d.last_error_changed(em).await?;
                }
                if send_levels && (old.peak != new.peak || old.rms != new.rms) {
                    d.peak_dbfs_changed(em).await?;
                    d.rms_dbfs_changed(em).await?;
                    *levels_at = now;
                }
                drop(d);
                mirror_group(
                    server,
                    &path,
                    old.s.group.as_ref(),
                    new.s.group.as_ref(),
                    send_levels,
                )
                .await?;
                *old = new;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_and_valid() {
        assert_eq!(device_path("garden"), "/org/hark/Agent1/device/garden");
        assert_eq!(
            device_path("garden-2"),
            "/org/hark/Agent1/device/garden_2d2"
        );
        assert_eq!(device_path("a_b"), "/org/hark/Agent1/device/a_5fb");
        for n in ["usb-pnp-sound-device", "x_y-z", "0"] {
            zbus::zvariant::OwnedObjectPath::try_from(device_path(n)).unwrap();
        }
    }
}

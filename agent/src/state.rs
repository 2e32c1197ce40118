//! The agent's state as the outside world sees it: one immutable [`Snapshot`],
//! built by the supervisor after every change and read by every view (D-Bus,
//! HTTP, metrics, systemd's STATUS=, the deadman).
//!
//! A leaf: it imports nothing of the agent, so the views, the supervisor and
//! the deadman can all depend on it without depending on each other. States are enums; their `as_str` spellings are part of the HTTP and
//! D-Bus APIs (keep them stable).

use serde::Serialize;

/// Where a stream's capture stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// A pipeline was started; no audio has arrived yet.
    #[default]
    Starting,
    /// Audio is flowing.
    Running,
    /// Audio stopped flowing; a restart is scheduled.
    Stalled,
    /// The pipeline failed; a restart is scheduled.
    Failed,
}

impl StreamState {
    pub const ALL: [StreamState; 4] = [
        StreamState::Starting,
        StreamState::Running,
        StreamState::Stalled,
        StreamState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Running => "running",
            StreamState::Stalled => "stalled",
            StreamState::Failed => "failed",
        }
    }
}

/// What a stream captures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The built-in test tone.
    #[default]
    Tone,
    /// A capture device named in the config.
    Alsa,
    /// A discovered microphone.
    Device,
    /// A `[[group]]`: its members' audio, mixed or merged.
    Group,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Tone => "tone",
            SourceKind::Alsa => "alsa",
            SourceKind::Device => "device",
            SourceKind::Group => "group",
        }
    }
}

/// What became of a sound card the agent has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Named and streamed at its own URL.
    Streaming,
    /// Its card id is being pinned; the stream starts next.
    Pinning,
    /// Not a microphone hark streams (the reason says why).
    Ignored,
    /// Named, but no capture plan fits what it can do.
    Unplayable,
    /// A `[[device]]` rule gives it a name another device present already has.
    Conflict,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Streaming => "streaming",
            DeviceState::Pinning => "pinning",
            DeviceState::Ignored => "ignored",
            DeviceState::Unplayable => "unplayable",
            DeviceState::Conflict => "conflict",
        }
    }
}

/// One stream as the outside world sees it (field names are part of the HTTP
/// API: keep them stable).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub state: StreamState,
    pub codec: &'static str,
    pub sample_rate: u32,
    pub channels: u32,
    pub clients: usize,
    /// Encoded bytes sent to clients (RTP payload before packetisation).
    pub bytes_sent: u64,
    pub peak_dbfs: Option<f64>,
    pub rms_dbfs: Option<f64>,
    pub silent: bool,
    pub restarts: u64,
    pub stalls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// The sound card it captures, for streams that follow a device.
    pub card: Option<u32>,
    pub source: SourceKind,
    /// Groups only: members, channel map, levels per channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupStatus>,
}

/// A group as its mixer sees it (`media/mixer.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupStatus {
    /// "mix" or "merge".
    pub mode: &'static str,
    /// Channels the group carries.
    pub channels: u32,
    /// In member order (merge: channel order).
    pub members: Vec<GroupMemberStatus>,
    /// Per group channel, over the last reading.
    pub peak_dbfs: Vec<f64>,
    pub rms_dbfs: Vec<f64>,
    /// Samples clamped at full scale since the group started.
    pub clipped_samples: u64,
}

/// One member of a group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupMemberStatus {
    pub name: String,
    /// Its audio is arriving and in the group.
    pub present: bool,
    /// Merge: the first group channel it occupies (0-based); mix: 0.
    pub first_channel: u32,
    pub channels: u32,
    /// How far behind the member's capture the group reads it: the mean
    /// over the last second.
    pub latency_ms: Option<f64>,
    /// The lowest it got in the last second (the controller holds this at
    /// `target_ms`).
    pub low_ms: Option<f64>,
    /// 40 ms, raised by 20 ms for each underrun up to 200 ms.
    pub target_ms: f64,
    /// How much faster (+) or slower (-) than nominal its clock is read.
    pub rate_ppm: f64,
    /// Times it ran dry (silence until refilled).
    pub underruns: u64,
    /// Times its queue grew past 500 ms and was cut back.
    pub resyncs: u64,
}

impl StreamStatus {
    /// Does it capture from a sound device (as opposed to the built-in tone)?
    pub fn captures(&self) -> bool {
        !matches!(self.source, SourceKind::Tone | SourceKind::Group)
    }

    pub fn running(&self) -> bool {
        self.state == StreamState::Running
    }
}

/// One sound card the agent has seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceStatus {
    pub card: u32,
    pub status: DeviceState,
    pub name: Option<String>,
    pub reason: Option<String>,
    pub vendor_product: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub port: Option<String>,
    /// The ALSA card id (pinned to the name when that succeeded).
    pub card_id: String,
    /// Capture capabilities: sample formats, rates, most channels.
    pub formats: Vec<String>,
    pub rates: Vec<u32>,
    pub channels: u32,
}

/// Where the deadman stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadmanState {
    #[default]
    Disabled,
    /// A reboot would be allowed if the agent cannot work for long enough.
    Armed,
    /// No reboot until a boot is marked good.
    Locked,
    /// A reboot was wanted and the ledger said no.
    Refusing,
    Rebooting,
    /// The ledger could not be read or written.
    Error,
}

impl DeadmanState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadmanState::Disabled => "disabled",
            DeadmanState::Armed => "armed",
            DeadmanState::Locked => "locked",
            DeadmanState::Refusing => "refusing",
            DeadmanState::Rebooting => "rebooting",
            DeadmanState::Error => "error",
        }
    }

    /// A state an operator must hear about.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            DeadmanState::Locked | DeadmanState::Refusing | DeadmanState::Error
        )
    }
}

/// The deadman as HTTP, D-Bus and STATUS= show it (field names are part of the
/// HTTP API). Kept by the deadman's monitor; shown with the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeadmanStatus {
    pub enabled: bool,
    pub state: DeadmanState,
    pub reboots_in_window: u32,
    pub max_reboots: u32,
    pub window_s: u64,
    /// This boot has been marked good.
    pub good_boot: bool,
    /// Why it is locked or refusing, or what failed.
    pub detail: Option<String>,
}

impl DeadmanStatus {
    pub fn disabled() -> DeadmanStatus {
        DeadmanStatus::default()
    }
}

/// What the last reload did (the log, STATUS= and D-Bus Reload say the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Streams added, removed and restarted with new settings.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Changed keys that take effect only when harkd restarts.
    pub needs_restart: Vec<String>,
    /// Why the new configuration was refused (nothing was applied).
    pub refused: Option<String>,
}

impl ReloadReport {
    /// One line: "2 added, 1 changed; needs a restart for rtsp.port".
    pub fn summary(&self) -> String {
        if let Some(why) = &self.refused {
            return format!("reload refused: {why}");
        }
        let mut parts = Vec::new();
        for (n, what) in [
            (self.added.len(), "added"),
            (self.removed.len(), "removed"),
            (self.changed.len(), "changed"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let mut line = if parts.is_empty() {
            "no stream changed".to_string()
        } else {
            format!("streams {}", parts.join(", "))
        };
        if !self.needs_restart.is_empty() {
            line.push_str(&format!(
                "; restart harkd to apply {}",
                self.needs_restart.join(", ")
            ));
        }
        line
    }
}

/// Which D-Bus bus the agent serves `org.hark.Agent1` on (`--bus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    System,
    Session,
}

impl BusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BusKind::System => "system",
            BusKind::Session => "session",
        }
    }
}

/// Where the D-Bus connection stands. Streams never wait for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BusState {
    /// No bus was asked for (`--bus none`).
    #[default]
    Disabled,
    /// Not connected yet (the first attempt, or retrying since start).
    Connecting,
    /// Connected, objects served and the name taken.
    Connected,
    /// Was connected, lost it; retrying.
    Lost,
}

impl BusState {
    pub fn as_str(self) -> &'static str {
        match self {
            BusState::Disabled => "disabled",
            BusState::Connecting => "connecting",
            BusState::Connected => "connected",
            BusState::Lost => "lost",
        }
    }
}

/// The D-Bus control plane as HTTP, metrics and STATUS= show it (field names
/// are part of the HTTP API).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BusStatus {
    /// The bus asked for; `None` with `--bus none`.
    pub wanted: Option<BusKind>,
    pub state: BusState,
    /// Why it is not connected (the last error); `None` when connected.
    pub detail: Option<String>,
    /// Times the agent connected again after losing the bus.
    pub reconnects: u64,
}

impl BusStatus {
    /// A bus was asked for and the first attempt is under way.
    pub fn connecting(bus: BusKind) -> BusStatus {
        BusStatus {
            wanted: Some(bus),
            state: BusState::Connecting,
            detail: None,
            reconnects: 0,
        }
    }

    /// A bus was asked for and is not connected.
    pub fn wanted_but_down(&self) -> bool {
        self.wanted.is_some() && self.state != BusState::Connected
    }
}

/// An immutable picture of the agent, published after every change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub streams: Vec<StreamStatus>,
    pub devices: Vec<DeviceStatus>,
    pub deadman: DeadmanStatus,
    /// Keys of the running configuration that changed on disk and wait for a
    /// restart (empty when the running configuration is the file's).
    pub pending_restart: Vec<String>,
    /// The D-Bus connection (shown, never a reason to call the agent unhealthy).
    pub bus: BusStatus,
    /// Local recording: per recorded stream, and the disk (`None` until the
    /// first stream with `record = true` starts).
    pub recording: Option<RecordingStatus>,
}

/// What a recorder is doing (`media/recorder.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecorderState {
    /// Writing a segment.
    Recording,
    /// Waiting for the stream's audio.
    Waiting,
    /// Stopped by a full disk or a write error; retried by itself.
    Paused,
}

impl RecorderState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecorderState::Recording => "recording",
            RecorderState::Waiting => "waiting",
            RecorderState::Paused => "paused",
        }
    }
}

/// One stream's recorder, with what retention last saw of its segments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecorderStatus {
    pub state: RecorderState,
    /// Why it is paused (empty otherwise).
    pub reason: String,
    /// The segment being written.
    pub file: Option<String>,
    /// Bytes written since the agent started.
    pub bytes_written: u64,
    /// Segments started since the agent started.
    pub segments_started: u64,
    #[serde(flatten)]
    pub on_disk: OnDisk,
}

/// A stream's segments as the last retention pass found them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OnDisk {
    pub segments: u64,
    pub disk_bytes: u64,
    /// File names.
    pub oldest: Option<String>,
    pub newest: Option<String>,
}

/// The recording directory as the janitor (`recording/janitor.rs`) last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiskStatus {
    pub directory: String,
    pub free_bytes: u64,
    /// False when the floor of free space cannot be kept: recording pauses.
    pub space_ok: bool,
    /// Segments deleted by retention since the agent started.
    pub deleted: u64,
    /// The last problem scanning or deleting (empty when none).
    pub error: String,
    /// By stream name.
    #[serde(skip)]
    pub streams: std::collections::BTreeMap<String, OnDisk>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecordingStatus {
    pub disk: DiskStatus,
    /// By stream name: streams recording now.
    pub streams: std::collections::BTreeMap<String, RecorderStatus>,
}

impl Snapshot {
    /// One line for logs and systemd's STATUS=: "2 streams running, 1 silent".
    pub fn summary(&self) -> String {
        let total = self.streams.len();
        let running = self.streams.iter().filter(|s| s.running()).count();
        let silent = self.streams.iter().filter(|s| s.silent).count();
        let down = total - running;
        let mut parts = vec![format!(
            "{running} stream{} running",
            if running == 1 { "" } else { "s" }
        )];
        if silent > 0 {
            parts.push(format!("{silent} silent"));
        }
        let paused = self.recording.as_ref().map_or(0, |r| {
            r.streams
                .values()
                .filter(|s| s.state == RecorderState::Paused)
                .count()
        });
        if paused > 0 {
            parts.push(format!("{paused} recording paused"));
        }
        if down > 0 {
            parts.push(format!("{down} not running"));
        }
        let conflicts = self
            .devices
            .iter()
            .filter(|d| d.status == DeviceState::Conflict)
            .count();
        if conflicts > 0 {
            parts.push(format!("{conflicts} device name conflict"));
        }
        parts.join(", ")
    }

    /// `summary` plus what an operator must act on: the deadman when it has
    /// something to say, a D-Bus connection that was asked for and is down, and
    /// keys waiting for a restart. systemd's STATUS=.
    pub fn status_line(&self) -> String {
        let d = &self.deadman;
        let mut line = match d.state {
            s if s.needs_attention() && d.enabled => format!(
                "{}; deadman {}: {}",
                self.summary(),
                s.as_str(),
                d.detail.as_deref().unwrap_or("")
            ),
            _ => self.summary(),
        };
        if self.bus.wanted_but_down() {
            line.push_str(&format!(
                "; D-Bus not connected: {}",
                self.bus
                    .detail
                    .as_deref()
                    .unwrap_or(self.bus.state.as_str())
            ));
        }
        if !self.pending_restart.is_empty() {
            line.push_str(&format!(
                "; restart to apply {}",
                self.pending_restart.join(", ")
            ));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, state: StreamState, silent: bool) -> StreamStatus {
        StreamStatus {
            name: name.into(),
            state,
            silent,
            ..StreamStatus::default()
        }
    }

    #[test]
    fn summary_lines() {
        let cases = [
            (vec![], "0 streams running"),
            (
                vec![status("a", StreamState::Running, false)],
                "1 stream running",
            ),
            (
                vec![
                    status("a", StreamState::Running, false),
                    status("b", StreamState::Running, true),
                    status("c", StreamState::Stalled, false),
                ],
                "2 streams running, 1 silent, 1 not running",
            ),
        ];
        for (streams, want) in cases {
            let snap = Snapshot {
                streams,
                ..Snapshot::default()
            };
            assert_eq!(snap.summary(), want);
        }
        let snap = Snapshot {
            pending_restart: vec!["rtsp.port".into()],
            ..Snapshot::default()
        };
        assert_eq!(
            snap.status_line(),
            "0 streams running; restart to apply rtsp.port"
        );
    }

    #[test]
    fn a_bus_down_is_in_the_status_line_only_when_wanted() {
        let mut snap = Snapshot::default();
        assert_eq!(snap.status_line(), "0 streams running");
        snap.bus = BusStatus::connecting(BusKind::System);
        assert_eq!(
            snap.status_line(),
            "0 streams running; D-Bus not connected: connecting"
        );
        snap.bus.state = BusState::Lost;
        snap.bus.detail = Some("the bus closed the connection".into());
        snap.pending_restart = vec!["rtsp.port".into()];
        assert_eq!(
            snap.status_line(),
            "0 streams running; D-Bus not connected: the bus closed the connection; \
             restart to apply rtsp.port"
        );
        snap.bus.state = BusState::Connected;
        snap.bus.detail = None;
        assert_eq!(
            snap.status_line(),
            "0 streams running; restart to apply rtsp.port"
        );
        assert_eq!(
            serde_json::to_value(&snap.bus).unwrap(),
            serde_json::json!({
                "wanted": "system", "state": "connected", "detail": null, "reconnects": 0
            })
        );
        for s in [
            BusState::Disabled,
            BusState::Connecting,
            BusState::Connected,
            BusState::Lost,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }

    #[test]
    fn spellings_are_the_api() {
        let json = serde_json::to_string(&StreamState::ALL).unwrap();
        assert_eq!(json, r#"["starting","running","stalled","failed"]"#);
        for s in StreamState::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&DeviceState::Conflict).unwrap(),
            "\"conflict\""
        );
        assert_eq!(
            serde_json::to_string(&SourceKind::Alsa).unwrap(),
            "\"alsa\""
        );
    }

    #[test]
    fn reload_summaries() {
        let r = ReloadReport {
            added: vec!["a".into()],
            changed: vec!["b".into(), "c".into()],
            needs_restart: vec!["rtsp.port".into()],
            ..ReloadReport::default()
        };
        assert_eq!(
            r.summary(),
            "streams 1 added, 2 changed; restart harkd to apply rtsp.port"
        );
        assert_eq!(ReloadReport::default().summary(), "no stream changed");
    }
}

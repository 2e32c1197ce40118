//! The agent's configuration: the TOML schema, its documented defaults, and the
//! one-time validation that turns a file into an immutable [`Config`].
//!
//! Owns: parsing and validating. Must not touch: anything at run time; a config is
//! read once (and again on reload) and never changed afterwards. A bad file is an
//! error naming the file, line, column and key; there is no silent fallback.
//!
//! Layout: `schema` is the file as serde reads it (unknown keys refused, defaults
//! filled in); `parse` turns bytes into that, with positions for errors;
//! `validate` checks it one section at a time (`streams` and `devices` have
//! their own modules) into the types below; `encoding` is the single check of
//! encoding settings shared by `[defaults]`, `[[stream]]` and `[[device]]`;
//! `changes` compares two loaded configs for a reload.

mod alerts;
mod changes;
mod devices;
mod encoding;
mod groups;
mod locate;
mod parse;
mod schema;
mod streams;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where a configuration error was found and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    /// Dotted key (`rtsp.port`, `stream[1].codec`), or `(file)` / `(syntax)`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.key,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// The audio codec a stream is encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Opus (RFC 7587): small, good quality, what most clients expect.
    Opus,
    /// Uncompressed 16-bit PCM (RFC 3551 L16): lossless, for analysis tools.
    L16,
    /// AAC-LC (RFC 3640 mpeg4-generic).
    Aac,
    /// MPEG-1 Layer III (RFC 2250).
    Mp3,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::L16 => "l16",
            Codec::Aac => "aac",
            Codec::Mp3 => "mp3",
        }
    }

    /// Sample rates the encoder accepts, or `None` for any rate.
    fn allowed_rates(self) -> Option<&'static [u32]> {
        match self {
            Codec::Opus => Some(&[8000, 12000, 16000, 24000, 48000]),
            Codec::L16 => None,
            Codec::Aac => Some(&[
                8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000,
            ]),
            Codec::Mp3 => Some(&[8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000]),
        }
    }

    /// Bit-rate range in bits per second, or `None` when the codec has no bit rate.
    fn bitrate_range(self) -> Option<(u32, u32)> {
        match self {
            Codec::Opus => Some((6_000, 510_000)),
            Codec::L16 => None,
            Codec::Aac => Some((8_000, 320_000)),
            Codec::Mp3 => Some((8_000, 320_000)),
        }
    }

    /// Most channels the encoder (and its RTP payload format) carries.
    fn max_channels(self) -> u32 {
        match self {
            // Opus in RTP (RFC 7587) is mono or stereo.
            Codec::Opus | Codec::Mp3 => 2,
            Codec::L16 | Codec::Aac => 8,
        }
    }
}

/// Where a stream's audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A built-in sine tone: serves audio with no hardware at all.
    Tone,
    /// An ALSA capture device, named by an ALSA device string.
    Alsa,
}

/// How the deadman asks for a reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootMethod {
    /// `org.freedesktop.login1.Manager.Reboot` on the system bus.
    Logind,
    /// `systemctl reboot`.
    Systemctl,
}

/// RTSP basic authentication credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspAuth {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for RtspAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password, not even in debug logs.
        f.debug_struct("RtspAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RtspConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub auth: Option<RtspAuth>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub allow_non_loopback: bool,
    /// Asked of every request but `/healthz`: `[http.auth]`, or beyond
    /// loopback `[rtsp.auth]` when that is absent.
    pub auth: Option<RtspAuth>,
    /// Browsers listening at once over WHEP (0: WHEP off).
    pub max_listeners: usize,
    /// `stun://host:port` handed to WebRTC sessions, if any.
    pub stun_server: Option<String>,
}

/// Health thresholds shared by every stream.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub stall_timeout: Duration,
    pub silence_threshold_dbfs: f64,
    pub silence_after: Duration,
    pub level_interval: Duration,
}

/// Restart backoff for failed or stalled capture pipelines.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartConfig {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

/// What a stream captures.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Tone {
        freq_hz: f64,
        level_dbfs: f64,
    },
    Alsa {
        device: String,
        buffer: Duration,
    },
    /// A `[[group]]`: other streams' audio, mixed or merged.
    Group(GroupSpec),
}

/// How a group combines its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupMode {
    /// Every member summed into the group's channels.
    Mix,
    /// Every member's channels side by side, in member order.
    Merge,
}

impl GroupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupMode::Mix => "mix",
            GroupMode::Merge => "merge",
        }
    }
}

/// One member of a group: a stream or device name.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMember {
    pub name: String,
    /// Mix only: gain applied to this member before the sum.
    pub gain_db: f64,
}

/// Who is in a group.
#[derive(Debug, Clone, PartialEq)]
pub enum Members {
    /// These, in this order (merge: channel order).
    Listed(Vec<GroupMember>),
    /// Every capture device present (`members = "all"`; mix only).
    AllDevices,
}

/// A validated `[[group]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub mode: GroupMode,
    pub members: Members,
    /// Channels each member contributes: merge's `member_channels`; in a mix,
    /// the group's channel count.
    pub member_channels: u32,
}

impl GroupSpec {
    /// Whether `stream` feeds this group (`devices`: is it a discovered device).
    pub fn has_member(&self, stream: &str, is_device: bool) -> bool {
        match &self.members {
            Members::Listed(m) => m.iter().any(|m| m.name == stream),
            Members::AllDevices => is_device,
        }
    }
}

/// How a stream is encoded and processed.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    pub codec: Codec,
    /// Bits per second; unused by L16.
    pub bitrate: u32,
    pub sample_rate: u32,
    pub channels: u32,
    /// Gain in dB applied before encoding; 0 = none.
    pub gain_db: f64,
    /// High-pass cut-off in Hz; 0 = off.
    pub highpass_hz: f64,
    /// Opus frame (and RTP packet) duration in ms; other codecs ignore it.
    pub frame_ms: u32,
}

/// One configured stream, fully resolved (defaults applied, validated).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub name: String,
    pub source: Source,
    pub encoding: Encoding,
    /// Kept on disk as it is streamed (`record`, see `[recording]`).
    pub record: bool,
}

/// Encoding wishes for a discovered device; the device's plan fills in the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    pub codec: Codec,
    /// `None`: the codec's default for the channel count the plan picks.
    pub bitrate: Option<u32>,
    pub sample_rate: u32,
    /// `None`: the device's native channel count (limited by the codec).
    pub channels: Option<u32>,
    pub gain_db: f64,
    pub highpass_hz: f64,
    /// `None`: the longest that fits the bit rate ([`default_frame_ms`]).
    pub frame_ms: Option<u32>,
    pub record: bool,
}

impl DeviceSettings {
    /// The encoding once the plan has fixed the channel count.
    pub fn encoding(&self, channels: u32) -> Encoding {
        let bitrate = self
            .bitrate
            .unwrap_or_else(|| default_bitrate(self.codec, channels));
        Encoding {
            codec: self.codec,
            bitrate,
            sample_rate: self.sample_rate,
            channels,
            gain_db: self.gain_db,
            highpass_hz: self.highpass_hz,
            frame_ms: self.frame_ms.unwrap_or_else(|| default_frame_ms(bitrate)),
        }
    }

    pub fn max_channels(&self) -> u32 {
        self.codec.max_channels()
    }
}

/// A `[[device]]` rule: which device, what to call it, how to stream it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRule {
    pub name: String,
    pub serial: Option<String>,
    pub vendor_product: Option<(u16, u16)>,
    pub port: Option<String>,
    pub settings: DeviceSettings,
}

/// Device discovery (udev hotplug, naming, pinning).
#[derive(Debug, Clone, PartialEq)]
pub struct DevicesConfig {
    pub enabled: bool,
    pub state_dir: PathBuf,
    /// ALSA device string template; `{card_id}`, `{card}` and `{pcm}` are filled in.
    pub alsa_device: String,
    pub pin_card_id: bool,
    pub allow_non_usb: bool,
    pub alsa_buffer: Duration,
    /// Settings for devices no rule names.
    pub defaults: DeviceSettings,
    pub rules: Vec<DeviceRule>,
}

/// The rate every member's audio is brought to inside a group (then the group's
/// own chain converts to its configured rate).
pub const GROUP_RATE: u32 = 48_000;

/// When a wall-clock time is good enough to name a recording by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustClock {
    /// Once the kernel says the clock is synchronised (NTP, chrony,
    /// systemd-timesyncd); until then names carry a marker.
    Synced,
    /// Always (a battery-backed RTC keeps the time).
    Always,
    /// Never: every name carries the marker.
    Never,
}

/// Recording to local files (`[recording]`), for streams with `record = true`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingConfig {
    pub directory: PathBuf,
    /// Segment length; with a trusted clock, cuts fall on multiples of it.
    pub segment: Duration,
    /// Older segments are deleted; 0 = no age limit.
    pub keep_days: u64,
    /// All recordings together at most this big; 0 = no cap.
    pub max_bytes: u64,
    /// Keep at least this much free on the filesystem.
    pub min_free_bytes: u64,
    pub trust_clock: TrustClock,
}

/// What an alert is about (`events` in `[[alert]]`; the `event` of its body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// harkd started (once per start).
    AgentStarted,
    /// A running stream's audio is below the silence threshold (and back).
    StreamSilent,
    /// A stream's audio stopped coming (and came back).
    StreamStalled,
    /// A stream's pipeline failed (and runs again).
    StreamFailed,
    /// The agent restarted a stream's pipeline (once per episode).
    StreamRestarted,
    DeviceAdded,
    DeviceRemoved,
    /// A recorder paused: full disk or write error (and resumed).
    RecordingPaused,
    /// The deadman changed state (armed, locked, refusing, rebooting, error).
    Deadman,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 9] = [
        AlertEvent::AgentStarted,
        AlertEvent::StreamSilent,
        AlertEvent::StreamStalled,
        AlertEvent::StreamFailed,
        AlertEvent::StreamRestarted,
        AlertEvent::DeviceAdded,
        AlertEvent::DeviceRemoved,
        AlertEvent::RecordingPaused,
        AlertEvent::Deadman,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::AgentStarted => "agent_started",
            AlertEvent::StreamSilent => "stream_silent",
            AlertEvent::StreamStalled => "stream_stalled",
            AlertEvent::StreamFailed => "stream_failed",
            AlertEvent::StreamRestarted => "stream_restarted",
            AlertEvent::DeviceAdded => "device_added",
            AlertEvent::DeviceRemoved => "device_removed",
            AlertEvent::RecordingPaused => "recording_paused",
            AlertEvent::Deadman => "deadman",
        }
    }
}

/// How an alert's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// The documented JSON object.
    Json,
    /// One line of plain text (ntfy and the like take it as the message).
    Text,
}

/// One webhook (`[[alert]]`).
#[derive(Clone, PartialEq)]
pub struct AlertConfig {
    pub name: String,
    /// http:// or https://, checked.
    pub url: String,
    pub events: std::collections::BTreeSet<AlertEvent>,
    pub format: AlertFormat,
    /// Signs each body (HMAC-SHA256, the `X-Hark-Signature` header).
    pub secret: Option<String>,
    /// Or the secret is this file's content (read at start; one trailing
    /// newline ignored), kept out of a world-readable config or Nix store.
    pub secret_file: Option<PathBuf>,
    /// Trust these CA certificates (PEM) instead of the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Per request, connect to the last byte of the answer.
    pub timeout: Duration,
    /// Attempts after the first, with a capped backoff.
    pub retries: u32,
    /// Say it again after this long if the condition persists; 0 = never.
    pub remind: Duration,
}

/// Never prints the secret, nor the URL's path and query (an ntfy topic or a
/// token in a URL is a secret too).
impl std::fmt::Debug for AlertConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertConfig")
            .field("name", &self.name)
            .field("events", &self.events)
            .field("format", &self.format)
            .field("secret", &self.secret.as_ref().map(|_| "(set)"))
            .field("secret_file", &self.secret_file)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("remind", &self.remind)
            .finish_non_exhaustive()
    }
}

/// The validated, immutable configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub rtsp: RtspConfig,
    pub http: HttpConfig,
    pub health: HealthConfig,
    pub restart: RestartConfig,
    pub streams: Vec<StreamSpec>,
    pub devices: DevicesConfig,
    pub deadman: DeadmanConfig,
    pub recording: RecordingConfig,
    pub alerts: Vec<AlertConfig>,
}

/// The deadman's reboot limits (`[deadman]`), as its ledger applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebootPolicy {
    /// At most this many reboots in any `window_s` of counted time.
    pub max_reboots: u32,
    pub window_s: u64,
    /// At least this long between two reboots.
    pub min_spacing_s: u64,
}

/// The last-resort reboot, capped by the reboot ledger (`deadman/`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadmanConfig {
    pub enabled: bool,
    pub policy: RebootPolicy,
    /// No stream running for this long, with streams present: ask for a reboot.
    pub unhealthy_after: Duration,
    /// Healthy for this long: mark the boot good.
    pub good_after: Duration,
    pub reboot: RebootMethod,
}

/// Longest stream name; names appear in URLs, logs, and later D-Bus paths.
pub const MAX_NAME_LEN: usize = 32;

/// Checks a stream name: 1-32 characters of `[a-z0-9_-]`, starting with a letter or digit.
pub fn validate_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("stream name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "stream name is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if let Some(bad) = name.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "stream name {name:?} contains {bad:?}; use lowercase letters, digits, '-' and '_'"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "stream name {name:?} must start with a letter or a digit"
        ));
    }
    Ok(())
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: 0,
            col: 0,
            key: "(file)".into(),
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Self::parse_bytes(path, &bytes)
    }

    /// Validates `bytes` as the content of the file at `path` (used for messages).
    pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
        let text = parse::text(path, bytes)?;
        let raw = parse::raw(path, text)?;
        validate::validate(path, text, raw)
    }
}

/// "0d8c:0014" -> (0x0d8c, 0x0014)
pub fn parse_vendor_product(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.trim().split_once(':')?;
    if a.len() != 4 || b.len() != 4 {
        return None;
    }
    Some((
        u16::from_str_radix(a, 16).ok()?,
        u16::from_str_radix(b, 16).ok()?,
    ))
}

/// The Opus frame durations `frame_ms` takes.
pub const FRAME_MS: [u32; 4] = [10, 20, 40, 60];

/// 60 ms: a third of the packets of the usual 20 ms, and so a third of the
/// per-packet work (thread hand-offs, RTP, syscalls) for every client, for 40
/// ms more latency. Listeners that want less set `frame_ms = 20`.
pub const DEFAULT_FRAME_MS: u32 = 60;

/// The most an Opus frame may take on average, in bytes: RTP never splits one,
/// so a packet must fit the network's (1500 bytes on Ethernet, less RTP, UDP
/// and IP headers, and room for a variable-rate frame above the average).
pub const MAX_OPUS_PACKET: u32 = 1000;

/// The average size of an Opus frame of `ms` at `bitrate` bits per second.
pub fn opus_packet_bytes(bitrate: u32, ms: u32) -> u32 {
    let bytes = u64::from(bitrate) * u64::from(ms) / 8000;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// [`DEFAULT_FRAME_MS`], or the longest frame that fits [`MAX_OPUS_PACKET`]
/// at `bitrate` (above 133 kb/s).
pub fn default_frame_ms(bitrate: u32) -> u32 {
    FRAME_MS
        .iter()
        .rev()
        .copied()
        .find(|f| *f <= DEFAULT_FRAME_MS && opus_packet_bytes(bitrate, *f) <= MAX_OPUS_PACKET)
        .unwrap_or(FRAME_MS[0])
}

fn default_bitrate(codec: Codec, channels: u32) -> u32 {
    match codec {
        Codec::Opus => 64_000 * channels.min(2),
        Codec::Aac => 64_000 * channels.min(2),
        Codec::Mp3 => 128_000,
        Codec::L16 => 0,
    }
}

//! The agent's configuration: the TOML schema, its documented defaults, and the
//! one-time validation that turns a file into an immutable [`Config`].
//!
//! Owns: parsing and validating. Must not touch: anything at run time; a config is
//! read once (and again on reload) and never changed afterwards. A bad file is an
//! error naming the file, line, column and key; there is no silent fallback.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    rtsp: RawRtsp,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    restart: RawRestart,
    #[serde(default)]
    defaults: RawSettings,
    #[serde(default)]
    stream: Vec<RawStream>,
    #[serde(default)]
    devices: RawDevices,
    #[serde(default)]
    device: Vec<RawDeviceRule>,
    #[serde(default)]
    deadman: RawDeadman,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadman {
    #[serde(default)]
    enabled: bool,
    #[serde(default = "default_max_reboots")]
    max_reboots: u32,
    #[serde(default = "default_window_s")]
    window_s: u64,
    #[serde(default = "default_min_spacing_s")]
    min_spacing_s: u64,
    #[serde(default = "default_unhealthy_after_s")]
    unhealthy_after_s: u64,
    #[serde(default = "default_good_after_s")]
    good_after_s: u64,
    #[serde(default = "default_reboot_method")]
    reboot: RebootMethod,
}

impl Default for RawDeadman {
    fn default() -> Self {
        RawDeadman {
            enabled: false,
            max_reboots: default_max_reboots(),
            window_s: default_window_s(),
            min_spacing_s: default_min_spacing_s(),
            unhealthy_after_s: default_unhealthy_after_s(),
            good_after_s: default_good_after_s(),
            reboot: default_reboot_method(),
        }
    }
}

fn default_max_reboots() -> u32 {
    3
}
fn default_window_s() -> u64 {
    86_400
}
fn default_min_spacing_s() -> u64 {
    1800
}
fn default_unhealthy_after_s() -> u64 {
    900
}
fn default_good_after_s() -> u64 {
    600
}
fn default_reboot_method() -> RebootMethod {
    RebootMethod::Logind
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevices {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_alsa_device")]
    alsa_device: String,
    #[serde(default = "default_true")]
    pin_card_id: bool,
    #[serde(default)]
    allow_non_usb: bool,
    #[serde(default = "default_alsa_buffer_ms")]
    alsa_buffer_ms: u64,
}

impl Default for RawDevices {
    fn default() -> Self {
        RawDevices {
            enabled: true,
            state_dir: default_state_dir(),
            alsa_device: default_alsa_device(),
            pin_card_id: true,
            allow_non_usb: false,
            alsa_buffer_ms: default_alsa_buffer_ms(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/hark")
}
fn default_alsa_device() -> String {
    "hw:{card},{pcm}".into()
}
fn default_alsa_buffer_ms() -> u64 {
    500
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeviceRule {
    name: String,
    serial: Option<String>,
    vendor_product: Option<String>,
    port: Option<String>,
    codec: Option<Codec>,
    bitrate: Option<u32>,
    sample_rate: Option<u32>,
    channels: Option<u32>,
    gain_db: Option<f64>,
    highpass_hz: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRtsp {
    #[serde(default = "default_rtsp_bind")]
    bind: IpAddr,
    #[serde(default = "default_rtsp_port")]
    port: u32,
    auth: Option<RawAuth>,
}

impl Default for RawRtsp {
    fn default() -> Self {
        RawRtsp {
            bind: default_rtsp_bind(),
            port: default_rtsp_port(),
            auth: None,
        }
    }
}

fn default_rtsp_bind() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}
fn default_rtsp_port() -> u32 {
    8554
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    user: String,
    password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_http_listen")]
    listen: SocketAddr,
    #[serde(default)]
    allow_non_loopback: bool,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_http_listen(),
            allow_non_loopback: false,
        }
    }
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8780))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(default = "default_stall_timeout_ms")]
    stall_timeout_ms: u64,
    #[serde(default = "default_silence_threshold")]
    silence_threshold_dbfs: f64,
    #[serde(default = "default_silence_after_s")]
    silence_after_s: u64,
    #[serde(default = "default_level_interval_ms")]
    level_interval_ms: u64,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            stall_timeout_ms: default_stall_timeout_ms(),
            silence_threshold_dbfs: default_silence_threshold(),
            silence_after_s: default_silence_after_s(),
            level_interval_ms: default_level_interval_ms(),
        }
    }
}

fn default_stall_timeout_ms() -> u64 {
    3000
}
fn default_silence_threshold() -> f64 {
    -70.0
}
fn default_silence_after_s() -> u64 {
    30
}
fn default_level_interval_ms() -> u64 {
    250
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    #[serde(default = "default_initial_ms")]
    initial_ms: u64,
    #[serde(default = "default_max_ms")]
    max_ms: u64,
    #[serde(default = "default_reset_after_s")]
    reset_after_s: u64,
}

impl Default for RawRestart {
    fn default() -> Self {
        RawRestart {
            initial_ms: default_initial_ms(),
            max_ms: default_max_ms(),
            reset_after_s: default_reset_after_s(),
        }
    }
}

fn default_initial_ms() -> u64 {
    1000
}
fn default_max_ms() -> u64 {
    60_000
}
fn default_reset_after_s() -> u64 {
    30
}

/// Encoding settings, as given in `[defaults]` or in a `[[stream]]`; every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    codec: Option<Codec>,
    bitrate: Option<u32>,
    sample_rate: Option<u32>,
    channels: Option<u32>,
    gain_db: Option<f64>,
    highpass_hz: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: String,
    source: SourceKind,
    device: Option<String>,
    tone_hz: Option<f64>,
    tone_dbfs: Option<f64>,
    alsa_buffer_ms: Option<u64>,
    codec: Option<Codec>,
    bitrate: Option<u32>,
    sample_rate: Option<u32>,
    channels: Option<u32>,
    gain_db: Option<f64>,
    highpass_hz: Option<f64>,
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
    Tone { freq_hz: f64, level_dbfs: f64 },
    Alsa { device: String, buffer: Duration },
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
}

/// One configured stream, fully resolved (defaults applied, validated).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub name: String,
    pub source: Source,
    pub encoding: Encoding,
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
}

impl DeviceSettings {
    /// The encoding once the plan has fixed the channel count.
    pub fn encoding(&self, channels: u32) -> Encoding {
        Encoding {
            codec: self.codec,
            bitrate: self
                .bitrate
                .unwrap_or_else(|| default_bitrate(self.codec, channels)),
            sample_rate: self.sample_rate,
            channels,
            gain_db: self.gain_db,
            highpass_hz: self.highpass_hz,
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
}

/// The last-resort reboot, capped by the reboot ledger (`deadman/`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadmanConfig {
    pub enabled: bool,
    pub policy: crate::deadman::ledger::Policy,
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
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let (line, col) = line_col(bytes, e.valid_up_to());
                return Err(ConfigError {
                    path: path.to_path_buf(),
                    line,
                    col,
                    key: "(file)".into(),
                    message: format!(
                        "the file is not UTF-8 text (invalid byte at offset {}); is this the right file?",
                        e.valid_up_to()
                    ),
                });
            }
        };
        let has_content = text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        if !has_content {
            return Err(ConfigError {
                path: path.to_path_buf(),
                line: 1,
                col: 1,
                key: "(file)".into(),
                message: "the file is empty; see configs/hark.toml for a documented example".into(),
            });
        }
        let raw = parse_raw(path, text)?;
        validate(path, text, raw)
    }
}

fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

fn parse_raw(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((1, 1), |s| line_col(text.as_bytes(), s.start));
        ConfigError {
            path: path.to_path_buf(),
            line,
            col,
            key: "(syntax)".into(),
            message: first_line(e.message()),
        }
    })?;
    serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
        let key_path = e.path().to_string();
        let inner = e.into_inner();
        let (line, col) = inner
            .span()
            .map_or((1, 1), |s| line_col(text.as_bytes(), s.start));
        let message = first_line(inner.message());
        // serde reports an unknown key at its table; name the key itself.
        let key = match unknown_field(&message) {
            Some(field) if key_path == "." => field,
            Some(field) if key_path.ends_with(&field) => key_path,
            Some(field) => format!("{key_path}.{field}"),
            None => key_path,
        };
        ConfigError {
            path: path.to_path_buf(),
            line,
            col,
            key,
            message,
        }
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// A key inside the document, for locating a validation error.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl Validator<'_> {
    fn error(&self, segs: &[Seg<'_>], message: impl Into<String>) -> ConfigError {
        let key = segs.iter().fold(String::new(), |mut acc, s| {
            match s {
                Seg::Key(k) => {
                    if !acc.is_empty() {
                        acc.push('.');
                    }
                    acc.push_str(k);
                }
                Seg::Index(i) => acc.push_str(&format!("[{i}]")),
            }
            acc
        });
        let offset = self.locate(segs);
        let (line, col) = offset.map_or((1, 1), |o| line_col(self.text.as_bytes(), o));
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            col,
            key,
            message: message.into(),
        }
    }

    /// Byte offset of the value at `segs`, or of its nearest enclosing table.
    fn locate(&self, segs: &[Seg<'_>]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item: &toml_edit::Item = doc.as_item();
        let mut best = None;
        for seg in segs {
            let next = match seg {
                Seg::Key(k) => item.get(k),
                Seg::Index(i) => item.get(*i),
            };
            let Some(next) = next else { break };
            best = next.span().map(|s| s.start).or(best);
            item = next;
        }
        best
    }
}

fn validate(path: &Path, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let v = Validator {
        path,
        text,
        doc: toml_edit::Document::parse(text).ok(),
    };

    if raw.rtsp.port == 0 || raw.rtsp.port > u32::from(u16::MAX) {
        return Err(v.error(
            &[Seg::Key("rtsp"), Seg::Key("port")],
            format!("port {} is out of range; use 1-65535", raw.rtsp.port),
        ));
    }
    let port = u16::try_from(raw.rtsp.port).map_err(|_| {
        v.error(
            &[Seg::Key("rtsp"), Seg::Key("port")],
            "port is out of range",
        )
    })?;
    let auth = match raw.rtsp.auth {
        None => None,
        Some(a) => {
            if a.user.is_empty() || a.user.contains(':') || a.user.chars().any(char::is_control) {
                return Err(v.error(
                    &[Seg::Key("rtsp"), Seg::Key("auth"), Seg::Key("user")],
                    "user must be non-empty, without ':' or control characters",
                ));
            }
            if a.password.is_empty() {
                return Err(v.error(
                    &[Seg::Key("rtsp"), Seg::Key("auth"), Seg::Key("password")],
                    "password is empty; remove [rtsp.auth] to turn authentication off",
                ));
            }
            Some(RtspAuth {
                user: a.user,
                password: a.password,
            })
        }
    };

    if raw.http.listen.port() == 0 {
        return Err(v.error(
            &[Seg::Key("http"), Seg::Key("listen")],
            "port 0 is not allowed; use 1-65535",
        ));
    }
    if !raw.http.listen.ip().is_loopback() && !raw.http.allow_non_loopback {
        return Err(v.error(
            &[Seg::Key("http"), Seg::Key("listen")],
            format!(
                "{} is not a loopback address; set http.allow_non_loopback = true to expose the status endpoint",
                raw.http.listen
            ),
        ));
    }

    let h = &raw.health;
    if !(100..=600_000).contains(&h.stall_timeout_ms) {
        return Err(v.error(
            &[Seg::Key("health"), Seg::Key("stall_timeout_ms")],
            "must be between 100 and 600000",
        ));
    }
    if !(h.silence_threshold_dbfs.is_finite() && (-150.0..=0.0).contains(&h.silence_threshold_dbfs))
    {
        return Err(v.error(
            &[Seg::Key("health"), Seg::Key("silence_threshold_dbfs")],
            "must be between -150 and 0 dBFS",
        ));
    }
    if !(20..=10_000).contains(&h.level_interval_ms) {
        return Err(v.error(
            &[Seg::Key("health"), Seg::Key("level_interval_ms")],
            "must be between 20 and 10000",
        ));
    }
    if h.level_interval_ms >= h.stall_timeout_ms {
        return Err(v.error(
            &[Seg::Key("health"), Seg::Key("level_interval_ms")],
            "must be shorter than health.stall_timeout_ms (levels are the proof that audio flows)",
        ));
    }
    let r = &raw.restart;
    if !(10..=60_000).contains(&r.initial_ms) {
        return Err(v.error(
            &[Seg::Key("restart"), Seg::Key("initial_ms")],
            "must be between 10 and 60000",
        ));
    }
    if r.max_ms < r.initial_ms || r.max_ms > 3_600_000 {
        return Err(v.error(
            &[Seg::Key("restart"), Seg::Key("max_ms")],
            "must be at least restart.initial_ms and at most 3600000",
        ));
    }

    let deadman = validate_deadman(&v, &raw.deadman)?;

    let mut names = BTreeSet::new();
    let mut streams = Vec::with_capacity(raw.stream.len());
    for (i, s) in raw.stream.into_iter().enumerate() {
        let at = |k: &'static str| [Seg::Key("stream"), Seg::Index(i), Seg::Key(k)];
        validate_stream_name(&s.name).map_err(|m| v.error(&at("name"), m))?;
        if !names.insert(s.name.clone()) {
            return Err(v.error(
                &at("name"),
                format!("duplicate stream name {:?}; names must be unique", s.name),
            ));
        }
        let source = match s.source {
            SourceKind::Tone => {
                if s.device.is_some() {
                    return Err(v.error(&at("device"), "only an alsa source has a device"));
                }
                if s.alsa_buffer_ms.is_some() {
                    return Err(v.error(&at("alsa_buffer_ms"), "only an alsa source has a buffer"));
                }
                let freq_hz = s.tone_hz.unwrap_or(440.0);
                if !(freq_hz.is_finite() && (1.0..=20_000.0).contains(&freq_hz)) {
                    return Err(v.error(&at("tone_hz"), "must be between 1 and 20000 Hz"));
                }
                let level_dbfs = s.tone_dbfs.unwrap_or(-20.0);
                if !(level_dbfs.is_finite() && (-100.0..=0.0).contains(&level_dbfs)) {
                    return Err(v.error(&at("tone_dbfs"), "must be between -100 and 0 dBFS"));
                }
                Source::Tone {
                    freq_hz,
                    level_dbfs,
                }
            }
            SourceKind::Alsa => {
                if s.tone_hz.is_some() || s.tone_dbfs.is_some() {
                    let k = if s.tone_hz.is_some() {
                        "tone_hz"
                    } else {
                        "tone_dbfs"
                    };
                    return Err(v.error(&at(k), "only a tone source has a tone"));
                }
                let device = match s.device {
                    Some(d) if !d.trim().is_empty() && !d.chars().any(char::is_control) => d,
                    Some(_) => {
                        return Err(
                            v.error(&at("device"), "device is empty or has control characters")
                        );
                    }
                    None => {
                        return Err(v.error(
                            &at("source"),
                            "an alsa source needs device = \"hw:CARD=...\" (see `arecord -L`)",
                        ));
                    }
                };
                let buffer_ms = s.alsa_buffer_ms.unwrap_or(500);
                if !(20..=5_000).contains(&buffer_ms) {
                    return Err(v.error(&at("alsa_buffer_ms"), "must be between 20 and 5000"));
                }
                Source::Alsa {
                    device,
                    buffer: Duration::from_millis(buffer_ms),
                }
            }
        };

        // Per-stream settings override [defaults], which override the built-ins.
        let d = &raw.defaults;
        let codec_from_stream = s.codec.is_some();
        let codec = s.codec.or(d.codec).unwrap_or(Codec::Opus);
        let codec_key: Vec<Seg<'_>> = if codec_from_stream {
            at("codec").to_vec()
        } else {
            vec![Seg::Key("defaults"), Seg::Key("codec")]
        };
        let pick = |own: Option<u32>, def: Option<u32>, key: &'static str| {
            if own.is_some() {
                (own, at(key).to_vec())
            } else {
                (def, vec![Seg::Key("defaults"), Seg::Key(key)])
            }
        };
        let (bitrate, bitrate_key) = pick(s.bitrate, d.bitrate, "bitrate");
        let (rate, rate_key) = pick(s.sample_rate, d.sample_rate, "sample_rate");
        let (channels, channels_key) = pick(s.channels, d.channels, "channels");
        let sample_rate = rate.unwrap_or(48_000);
        let channels = channels.unwrap_or(1);
        let bitrate = match (codec.bitrate_range(), bitrate) {
            (Some((lo, hi)), Some(b)) if !(lo..=hi).contains(&b) => {
                return Err(v.error(
                    &bitrate_key,
                    format!(
                        "bitrate {b} is out of range for {}: use {lo}-{hi} bits per second",
                        codec.as_str()
                    ),
                ));
            }
            (_, Some(b)) => b,
            (Some(_), None) => default_bitrate(codec, channels),
            (None, None) => 0,
        };
        if !(8_000..=384_000).contains(&sample_rate) {
            return Err(v.error(&rate_key, "must be between 8000 and 384000 Hz"));
        }
        if let Some(rates) = codec.allowed_rates()
            && !rates.contains(&sample_rate)
        {
            return Err(v.error(
                if rate.is_some() { &rate_key } else { &codec_key },
                format!(
                    "{} cannot encode {sample_rate} Hz; it takes {rates:?} (use codec \"l16\" for other rates)",
                    codec.as_str()
                ),
            ));
        }
        if channels == 0 || channels > codec.max_channels() {
            return Err(v.error(
                &channels_key,
                format!(
                    "{} carries 1-{} channels, not {channels}",
                    codec.as_str(),
                    codec.max_channels()
                ),
            ));
        }
        let (gain_db, gain_key) = match s.gain_db {
            Some(g) => (g, at("gain_db").to_vec()),
            None => (
                d.gain_db.unwrap_or(0.0),
                vec![Seg::Key("defaults"), Seg::Key("gain_db")],
            ),
        };
        if !(gain_db.is_finite() && (-60.0..=40.0).contains(&gain_db)) {
            return Err(v.error(&gain_key, "must be between -60 and 40 dB"));
        }
        let (highpass_hz, hp_key) = match s.highpass_hz {
            Some(g) => (g, at("highpass_hz").to_vec()),
            None => (
                d.highpass_hz.unwrap_or(0.0),
                vec![Seg::Key("defaults"), Seg::Key("highpass_hz")],
            ),
        };
        let nyquist = f64::from(sample_rate) / 2.0;
        if !(highpass_hz.is_finite() && highpass_hz >= 0.0 && highpass_hz < nyquist) {
            return Err(v.error(
                &hp_key,
                format!("must be 0 (off) or a frequency below {nyquist} Hz"),
            ));
        }
        streams.push(StreamSpec {
            name: s.name,
            source,
            encoding: Encoding {
                codec,
                bitrate,
                sample_rate,
                channels,
                gain_db,
                highpass_hz,
            },
        });
    }

    // [defaults] must be valid on its own too, even when no stream uses a key.
    if let Some(c) = raw.defaults.channels
        && c == 0
    {
        return Err(v.error(
            &[Seg::Key("defaults"), Seg::Key("channels")],
            "must be at least 1",
        ));
    }

    let devices = validate_devices(&v, &raw.devices, &raw.device, &raw.defaults, &names)?;

    Ok(Config {
        path: path.to_path_buf(),
        rtsp: RtspConfig {
            bind: raw.rtsp.bind,
            port,
            auth,
        },
        http: HttpConfig {
            listen: raw.http.listen,
            allow_non_loopback: raw.http.allow_non_loopback,
        },
        health: HealthConfig {
            stall_timeout: Duration::from_millis(h.stall_timeout_ms),
            silence_threshold_dbfs: h.silence_threshold_dbfs,
            silence_after: Duration::from_secs(h.silence_after_s),
            level_interval: Duration::from_millis(h.level_interval_ms),
        },
        restart: RestartConfig {
            initial: Duration::from_millis(r.initial_ms),
            max: Duration::from_millis(r.max_ms),
            reset_after: Duration::from_secs(r.reset_after_s),
        },
        streams,
        devices,
        deadman,
    })
}

fn validate_deadman(v: &Validator<'_>, d: &RawDeadman) -> Result<DeadmanConfig, ConfigError> {
    let at = |k: &'static str| [Seg::Key("deadman"), Seg::Key(k)];
    if !(1..=100).contains(&d.max_reboots) {
        return Err(v.error(
            &at("max_reboots"),
            "must be between 1 and 100 (set enabled = false for no reboots at all)",
        ));
    }
    if !(60..=30 * 86_400).contains(&d.window_s) {
        return Err(v.error(&at("window_s"), "must be between 60 and 2592000 (30 days)"));
    }
    if d.min_spacing_s > d.window_s {
        return Err(v.error(
            &at("min_spacing_s"),
            "must not be longer than deadman.window_s",
        ));
    }
    if !(1..=7 * 86_400).contains(&d.unhealthy_after_s) {
        return Err(v.error(
            &at("unhealthy_after_s"),
            "must be between 1 and 604800 (7 days)",
        ));
    }
    if !(1..=7 * 86_400).contains(&d.good_after_s) {
        return Err(v.error(&at("good_after_s"), "must be between 1 and 604800 (7 days)"));
    }
    Ok(DeadmanConfig {
        enabled: d.enabled,
        policy: crate::deadman::ledger::Policy {
            max_reboots: d.max_reboots,
            window_s: d.window_s,
            min_spacing_s: d.min_spacing_s,
        },
        unhealthy_after: Duration::from_secs(d.unhealthy_after_s),
        good_after: Duration::from_secs(d.good_after_s),
        reboot: d.reboot,
    })
}

fn validate_devices(
    v: &Validator<'_>,
    d: &RawDevices,
    rules: &[RawDeviceRule],
    defaults: &RawSettings,
    stream_names: &BTreeSet<String>,
) -> Result<DevicesConfig, ConfigError> {
    let at = |k: &'static str| [Seg::Key("devices"), Seg::Key(k)];
    // A template without {card} or {card_id} points every device at one PCM: only
    // useful with a userspace PCM (the tests), so allowed, but never empty.
    if d.alsa_device.trim().is_empty() {
        return Err(v.error(&at("alsa_device"), "must not be empty"));
    }
    if d.alsa_device.chars().any(char::is_control) {
        return Err(v.error(&at("alsa_device"), "has control characters"));
    }
    if !(20..=5_000).contains(&d.alsa_buffer_ms) {
        return Err(v.error(&at("alsa_buffer_ms"), "must be between 20 and 5000"));
    }
    let settings = |own: &RawSettings, key: &dyn Fn(&'static str) -> Vec<Seg<'static>>| {
        let codec = own.codec.or(defaults.codec).unwrap_or(Codec::Opus);
        let sample_rate = own.sample_rate.or(defaults.sample_rate).unwrap_or(48_000);
        let channels = own.channels.or(defaults.channels);
        let bitrate = own.bitrate.or(defaults.bitrate);
        let gain_db = own.gain_db.or(defaults.gain_db).unwrap_or(0.0);
        let highpass_hz = own.highpass_hz.or(defaults.highpass_hz).unwrap_or(0.0);
        if let Some(rates) = codec.allowed_rates()
            && !rates.contains(&sample_rate)
        {
            return Err(v.error(
                &key("sample_rate"),
                format!(
                    "{} cannot encode {sample_rate} Hz; it takes {rates:?}",
                    codec.as_str()
                ),
            ));
        }
        if !(8_000..=384_000).contains(&sample_rate) {
            return Err(v.error(&key("sample_rate"), "must be between 8000 and 384000 Hz"));
        }
        if let (Some((lo, hi)), Some(b)) = (codec.bitrate_range(), bitrate)
            && !(lo..=hi).contains(&b)
        {
            return Err(v.error(
                &key("bitrate"),
                format!(
                    "bitrate {b} is out of range for {}: use {lo}-{hi}",
                    codec.as_str()
                ),
            ));
        }
        if let Some(c) = channels
            && (c == 0 || c > codec.max_channels())
        {
            return Err(v.error(
                &key("channels"),
                format!(
                    "{} carries 1-{} channels, not {c}",
                    codec.as_str(),
                    codec.max_channels()
                ),
            ));
        }
        if !(gain_db.is_finite() && (-60.0..=40.0).contains(&gain_db)) {
            return Err(v.error(&key("gain_db"), "must be between -60 and 40 dB"));
        }
        if !(highpass_hz.is_finite()
            && highpass_hz >= 0.0
            && highpass_hz < f64::from(sample_rate) / 2.0)
        {
            return Err(v.error(
                &key("highpass_hz"),
                "must be 0 (off) or below half the sample rate",
            ));
        }
        Ok(DeviceSettings {
            codec,
            bitrate,
            sample_rate,
            channels,
            gain_db,
            highpass_hz,
        })
    };
    let default_settings = settings(&RawSettings::default(), &|k| {
        vec![Seg::Key("defaults"), Seg::Key(k)]
    })?;
    let mut names = stream_names.clone();
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let key = move |k: &'static str| vec![Seg::Key("device"), Seg::Index(i), Seg::Key(k)];
        validate_stream_name(&r.name).map_err(|m| v.error(&key("name"), m))?;
        if !names.insert(r.name.clone()) {
            return Err(v.error(
                &key("name"),
                format!(
                    "duplicate name {:?}; stream and device names must be unique",
                    r.name
                ),
            ));
        }
        let vendor_product = match &r.vendor_product {
            None => None,
            Some(vp) => Some(parse_vendor_product(vp).ok_or_else(|| {
                v.error(
                    &key("vendor_product"),
                    "must look like \"0d8c:0014\" (hex vendor:product)",
                )
            })?),
        };
        if r.serial.is_none() && vendor_product.is_none() && r.port.is_none() {
            return Err(v.error(
                &key("name"),
                "a [[device]] rule needs at least one of serial, vendor_product, port",
            ));
        }
        let own = RawSettings {
            codec: r.codec,
            bitrate: r.bitrate,
            sample_rate: r.sample_rate,
            channels: r.channels,
            gain_db: r.gain_db,
            highpass_hz: r.highpass_hz,
        };
        out.push(DeviceRule {
            name: r.name.clone(),
            serial: r.serial.clone(),
            vendor_product,
            port: r.port.clone(),
            settings: settings(&own, &key)?,
        });
    }
    Ok(DevicesConfig {
        enabled: d.enabled,
        state_dir: d.state_dir.clone(),
        alsa_device: d.alsa_device.clone(),
        pin_card_id: d.pin_card_id,
        allow_non_usb: d.allow_non_usb,
        alsa_buffer: Duration::from_millis(d.alsa_buffer_ms),
        defaults: default_settings,
        rules: out,
    })
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

fn default_bitrate(codec: Codec, channels: u32) -> u32 {
    match codec {
        Codec::Opus => 64_000 * channels.min(2),
        Codec::Aac => 64_000 * channels.min(2),
        Codec::Mp3 => 128_000,
        Codec::L16 => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_bytes(Path::new("t.toml"), text.as_bytes())
    }

    #[test]
    fn minimal_stream_gets_documented_defaults() {
        let c = parse("[[stream]]\nname = \"a\"\nsource = \"tone\"\n").unwrap();
        assert_eq!(c.rtsp.port, 8554);
        assert_eq!(c.rtsp.bind, default_rtsp_bind());
        assert_eq!(c.http.listen, default_http_listen());
        assert_eq!(c.health.stall_timeout, Duration::from_secs(3));
        let s = &c.streams[0];
        assert_eq!(s.encoding.codec, Codec::Opus);
        assert_eq!(s.encoding.sample_rate, 48_000);
        assert_eq!(s.encoding.channels, 1);
        assert_eq!(s.encoding.bitrate, 64_000);
        assert_eq!(
            s.source,
            Source::Tone {
                freq_hz: 440.0,
                level_dbfs: -20.0
            }
        );
    }

    #[test]
    fn stream_overrides_defaults() {
        let c = parse(
            "[defaults]\ncodec = \"l16\"\nsample_rate = 96000\n\n[[stream]]\nname = \"a\"\nsource = \"tone\"\n\n[[stream]]\nname = \"b\"\nsource = \"tone\"\ncodec = \"opus\"\nsample_rate = 48000\nbitrate = 32000\n",
        )
        .unwrap();
        assert_eq!(c.streams[0].encoding.codec, Codec::L16);
        assert_eq!(c.streams[0].encoding.sample_rate, 96_000);
        assert_eq!(c.streams[1].encoding.codec, Codec::Opus);
        assert_eq!(c.streams[1].encoding.bitrate, 32_000);
    }

    #[test]
    fn errors_name_line_column_and_key() {
        let cases: &[(&str, &str, usize, &str)] = &[
            ("[rtsp]\nport = 0\n", "rtsp.port", 2, "out of range"),
            (
                "[deadman]\nmax_reboots = 0\n",
                "deadman.max_reboots",
                2,
                "between 1 and 100",
            ),
            (
                "[deadman]\nwindow_s = 3600\nmin_spacing_s = 7200\n",
                "deadman.min_spacing_s",
                3,
                "not be longer than deadman.window_s",
            ),
            (
                "[deadman]\nreboot = \"kexec\"\n",
                "deadman.reboot",
                2,
                "unknown variant",
            ),
            (
                "[deadman]\nunhealthy_after_s = 0\n",
                "deadman.unhealthy_after_s",
                2,
                "between 1 and",
            ),
            ("[rtsp]\nport = 70000\n", "rtsp.port", 2, "out of range"),
            ("[rtsp]\nbogus = 1\n", "rtsp.bogus", 2, "unknown field"),
            ("[rtsp]\nport = \"x\"\n", "rtsp.port", 2, "invalid type"),
            (
                "[[stream]]\nname = \"a\"\nsource = \"tone\"\nbitrate = -5\n",
                "stream[0].bitrate",
                4,
                "",
            ),
            (
                "[[stream]]\nname = \"a\"\nsource = \"tone\"\n[[stream]]\nname = \"a\"\nsource = \"tone\"\n",
                "stream[1].name",
                5,
                "duplicate",
            ),
            (
                "[[stream]]\nname = \"a\"\nsource = \"tone\"\ncodec = \"flac\"\n",
                "stream[0].codec",
                4,
                "unknown variant",
            ),
            (
                "[[stream]]\nname = \"a\"\nsource = \"alsa\"\n",
                "stream[0].source",
                3,
                "needs device",
            ),
            (
                "[[stream]]\nname = \"a\"\nsource = \"tone\"\nsample_rate = 44100\n",
                "stream[0].sample_rate",
                4,
                "cannot encode",
            ),
            (
                "[defaults]\nbitrate = 1\n[[stream]]\nname = \"a\"\nsource = \"tone\"\n",
                "defaults.bitrate",
                2,
                "out of range",
            ),
            (
                "[[stream]]\nname = \"Bad Name\"\nsource = \"tone\"\n",
                "stream[0].name",
                2,
                "contains",
            ),
            (
                "[http]\nlisten = \"0.0.0.0:80\"\n",
                "http.listen",
                2,
                "loopback",
            ),
            ("a = [\n", "(syntax)", 1, "unclosed array"),
        ];
        for (text, key, line, msg) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(&e.key, key, "{text:?}: {e}");
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn empty_and_binary_files_are_errors() {
        let e = parse("# only a comment\n\n").unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        let e = Config::parse_bytes(Path::new("t"), &[0x41, 0xff, 0xfe, 0x00]).unwrap_err();
        assert!(e.message.contains("not UTF-8"), "{e}");
        assert_eq!((e.line, e.col), (1, 2));
    }

    #[test]
    fn password_is_not_printed() {
        let c = parse("[rtsp.auth]\nuser = \"u\"\npassword = \"hunter2\"\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}

//! The file as serde reads it: one `Raw*` struct per table, unknown keys refused,
//! the documented defaults filled in. No checks beyond types live here; see
//! `validate` and its section modules for those.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::{Codec, RebootMethod, SourceKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub rtsp: RawRtsp,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub restart: RawRestart,
    #[serde(default)]
    pub defaults: RawSettings,
    #[serde(default)]
    pub stream: Vec<RawStream>,
    #[serde(default)]
    pub devices: RawDevices,
    #[serde(default)]
    pub device: Vec<RawDeviceRule>,
    #[serde(default)]
    pub deadman: RawDeadman,
    #[serde(default)]
    pub group: Vec<RawGroup>,
    #[serde(default)]
    pub recording: RawRecording,
    #[serde(default)]
    pub alert: Vec<RawAlert>,
}

// ---- [rtsp] -------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRtsp {
    #[serde(default = "default_rtsp_bind")]
    pub bind: IpAddr,
    #[serde(default = "default_rtsp_port")]
    pub port: u32,
    pub auth: Option<RawAuth>,
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

pub(super) fn default_rtsp_bind() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}
fn default_rtsp_port() -> u32 {
    8554
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub user: String,
    pub password: String,
}

// ---- [http] -------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub allow_non_loopback: bool,
    /// Credentials for everything but `/healthz`; beyond loopback, `[rtsp.auth]`
    /// when this is absent.
    pub auth: Option<RawAuth>,
    /// Browsers listening at once (WHEP), over all streams; 0 turns WHEP off.
    #[serde(default = "default_max_listeners")]
    pub max_listeners: u32,
    /// `stun://host:port`, for browsers behind NAT (none needed on a LAN).
    pub stun_server: Option<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_http_listen(),
            allow_non_loopback: false,
            auth: None,
            max_listeners: default_max_listeners(),
            stun_server: None,
        }
    }
}

fn default_max_listeners() -> u32 {
    8
}

pub(super) fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8780))
}

// ---- [health] -----------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    #[serde(default = "default_silence_threshold")]
    pub silence_threshold_dbfs: f64,
    #[serde(default = "default_silence_after_s")]
    pub silence_after_s: u64,
    #[serde(default = "default_level_interval_ms")]
    pub level_interval_ms: u64,
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

// ---- [restart] ----------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRestart {
    #[serde(default = "default_initial_ms")]
    pub initial_ms: u64,
    #[serde(default = "default_max_ms")]
    pub max_ms: u64,
    #[serde(default = "default_reset_after_s")]
    pub reset_after_s: u64,
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

// ---- [recording] --------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecording {
    /// `None`: `recordings` under `[devices] state_dir`.
    pub directory: Option<PathBuf>,
    #[serde(default = "default_segment_s")]
    pub segment_s: u64,
    #[serde(default = "default_keep_days")]
    pub keep_days: u64,
    #[serde(default)]
    pub max_bytes: u64,
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    #[serde(default = "default_trust_clock")]
    pub trust_clock: super::TrustClock,
}

impl Default for RawRecording {
    fn default() -> Self {
        RawRecording {
            directory: None,
            segment_s: default_segment_s(),
            keep_days: default_keep_days(),
            max_bytes: 0,
            min_free_bytes: default_min_free_bytes(),
            trust_clock: default_trust_clock(),
        }
    }
}

fn default_segment_s() -> u64 {
    600
}
fn default_keep_days() -> u64 {
    30
}
fn default_min_free_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_trust_clock() -> super::TrustClock {
    super::TrustClock::Synced
}

// ---- [deadman] ----------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadman {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_max_reboots")]
    pub max_reboots: u32,
    #[serde(default = "default_window_s")]
    pub window_s: u64,
    #[serde(default = "default_min_spacing_s")]
    pub min_spacing_s: u64,
    #[serde(default = "default_unhealthy_after_s")]
    pub unhealthy_after_s: u64,
    #[serde(default = "default_good_after_s")]
    pub good_after_s: u64,
    #[serde(default = "default_reboot_method")]
    pub reboot: RebootMethod,
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

// ---- encoding settings: [defaults], [[stream]], [[device]] --------------------

/// Encoding settings as written in one table; every key optional. `[defaults]`
/// is exactly this; `[[stream]]` and `[[device]]` carry the same keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub codec: Option<Codec>,
    pub bitrate: Option<u32>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub gain_db: Option<f64>,
    pub highpass_hz: Option<f64>,
    pub frame_ms: Option<u32>,
    pub record: Option<bool>,
}

/// `settings()` for a table that spells out the encoding keys: the same keys
/// as [`RawSettings`], taken as written.
macro_rules! settings_of {
    ($t:ty) => {
        impl $t {
            pub fn settings(&self) -> RawSettings {
                RawSettings {
                    codec: self.codec,
                    bitrate: self.bitrate,
                    sample_rate: self.sample_rate,
                    channels: self.channels,
                    gain_db: self.gain_db,
                    highpass_hz: self.highpass_hz,
                    frame_ms: self.frame_ms,
                    record: self.record,
                }
            }
        }
    };
}

// ---- [devices] and [[device]] -------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevices {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_alsa_device")]
    pub alsa_device: String,
    #[serde(default = "default_true")]
    pub pin_card_id: bool,
    #[serde(default)]
    pub allow_non_usb: bool,
    #[serde(default = "default_alsa_buffer_ms")]
    pub alsa_buffer_ms: u64,
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
/// Capture ring buffer, for `[devices]` and for an alsa `[[stream]]` alike.
pub(super) fn default_alsa_buffer_ms() -> u64 {
    500
}

// The encoding keys are spelled out rather than `#[serde(flatten)]`ed: flatten
// defeats deny_unknown_fields and loses the key path and position of errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeviceRule {
    pub name: String,
    pub serial: Option<String>,
    pub vendor_product: Option<String>,
    pub port: Option<String>,
    pub codec: Option<Codec>,
    pub bitrate: Option<u32>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub gain_db: Option<f64>,
    pub highpass_hz: Option<f64>,
    pub frame_ms: Option<u32>,
    pub record: Option<bool>,
}

settings_of!(RawDeviceRule);

// ---- [[stream]] ---------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    pub name: String,
    pub source: SourceKind,
    pub device: Option<String>,
    pub tone_hz: Option<f64>,
    pub tone_dbfs: Option<f64>,
    pub alsa_buffer_ms: Option<u64>,
    pub codec: Option<Codec>,
    pub bitrate: Option<u32>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub gain_db: Option<f64>,
    pub highpass_hz: Option<f64>,
    pub frame_ms: Option<u32>,
    pub record: Option<bool>,
}

settings_of!(RawStream);

// ---- [[group]] ----------------------------------------------------------------

/// `members`: a list of names, or one word (`"all"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMembers {
    Word(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub name: String,
    pub mode: super::GroupMode,
    pub members: RawMembers,
    pub member_channels: Option<u32>,
    #[serde(default)]
    pub member_gain_db: std::collections::BTreeMap<String, f64>,
    pub codec: Option<Codec>,
    pub bitrate: Option<u32>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub gain_db: Option<f64>,
    pub highpass_hz: Option<f64>,
    pub frame_ms: Option<u32>,
    pub record: Option<bool>,
}

settings_of!(RawGroup);

// ---- [[alert]] ----------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    /// `None`: `alert-N`, N its position (from 1).
    pub name: Option<String>,
    pub url: String,
    /// `None`: every event.
    pub events: Option<Vec<super::AlertEvent>>,
    #[serde(default = "default_alert_format")]
    pub format: super::AlertFormat,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_alert_timeout_s")]
    pub timeout_s: u64,
    #[serde(default = "default_alert_retries")]
    pub retries: u32,
    #[serde(default = "default_alert_remind_s")]
    pub remind_s: u64,
}

fn default_alert_format() -> super::AlertFormat {
    super::AlertFormat::Json
}
fn default_alert_timeout_s() -> u64 {
    10
}
fn default_alert_retries() -> u32 {
    5
}
fn default_alert_remind_s() -> u64 {
    6 * 3600
}

//! The one check of encoding settings (codec, bitrate, sample_rate, channels,
//! gain_db, highpass_hz, frame_ms), whichever table they are written in: `[defaults]` on
//! its own, and a `[[stream]]` or `[[device]]` with `[defaults]` filling in what
//! it leaves out. The same mistake gives the same message everywhere; the error
//! names the key where the offending value is written.

use super::locate::{Seg, Validator, at};
use super::schema::RawSettings;
use super::{
    Codec, ConfigError, DeviceSettings, FRAME_MS, MAX_OPUS_PACKET, default_frame_ms,
    opus_packet_bytes,
};

const DEFAULTS: &[Seg] = &[Seg::Key("defaults")];

/// Settings tables, most specific first (a stream or device rule, then `[defaults]`),
/// each with the key path of its table.
type Layers<'a> = [(&'a [Seg], &'a RawSettings)];

/// A resolved setting and where it comes from.
struct Pick<T> {
    value: T,
    /// The key the value is written at; for a built-in default, the key it would
    /// be written at in the most specific table.
    key: Vec<Seg>,
    /// The table it comes from: 0 is the most specific; the number of tables
    /// means a built-in default.
    rank: usize,
}

impl<T> Pick<Option<T>> {
    fn or(self, builtin: T) -> Pick<T> {
        Pick {
            value: self.value.unwrap_or(builtin),
            key: self.key,
            rank: self.rank,
        }
    }
}

fn pick<T>(
    layers: &Layers<'_>,
    name: &'static str,
    get: fn(&RawSettings) -> Option<T>,
) -> Pick<Option<T>> {
    for (rank, (table, raw)) in layers.iter().enumerate() {
        if let Some(value) = get(raw) {
            return Pick {
                value: Some(value),
                key: at(table, name),
                rank,
            };
        }
    }
    let table = layers.first().map_or(DEFAULTS, |(t, _)| t);
    Pick {
        value: None,
        key: at(table, name),
        rank: layers.len(),
    }
}

/// The key to blame when `value` does not fit `basis` (a bit rate the codec does
/// not take, say): the one written in the more specific table, `value` on a tie.
/// `[defaults]` on its own has been checked first, so a conflict between two
/// tables is introduced by the more specific one.
fn blame<'p, A, B>(value: &'p Pick<A>, basis: &'p Pick<B>) -> &'p [Seg] {
    if basis.rank < value.rank {
        &basis.key
    } else {
        &value.key
    }
}

/// `[defaults]` on its own: what a discovered device no rule names gets.
pub(super) fn defaults(
    v: &Validator<'_>,
    raw: &RawSettings,
) -> Result<DeviceSettings, ConfigError> {
    resolve(v, &[(DEFAULTS, raw)])
}

/// A `[[stream]]` or `[[device]]` table at `table`, over `[defaults]`.
pub(super) fn layered(
    v: &Validator<'_>,
    table: &[Seg],
    own: &RawSettings,
    defaults: &RawSettings,
) -> Result<DeviceSettings, ConfigError> {
    resolve(v, &[(table, own), (DEFAULTS, defaults)])
}

fn resolve(v: &Validator<'_>, layers: &Layers<'_>) -> Result<DeviceSettings, ConfigError> {
    let codec = pick(layers, "codec", |r| r.codec).or(Codec::Opus);
    let rate = pick(layers, "sample_rate", |r| r.sample_rate).or(48_000);
    let bitrate = pick(layers, "bitrate", |r| r.bitrate);
    let channels = pick(layers, "channels", |r| r.channels);
    let gain = pick(layers, "gain_db", |r| r.gain_db).or(0.0);
    let highpass = pick(layers, "highpass_hz", |r| r.highpass_hz).or(0.0);
    let frame = pick(layers, "frame_ms", |r| r.frame_ms);
    let record = pick(layers, "record", |r| r.record).or(false);
    check_sample_rate(v, &codec, &rate)?;
    check_bitrate(v, &codec, &bitrate)?;
    check_channels(v, &codec, &channels)?;
    v.ensure(
        gain.value.is_finite() && (-60.0..=40.0).contains(&gain.value),
        &gain.key,
        "must be between -60 and 40 dB",
    )?;
    check_highpass(v, &rate, &highpass)?;
    check_frame(v, &codec, &frame, &bitrate)?;
    Ok(DeviceSettings {
        codec: codec.value,
        bitrate: bitrate.value,
        sample_rate: rate.value,
        channels: channels.value,
        gain_db: gain.value,
        highpass_hz: highpass.value,
        frame_ms: frame.value,
        record: record.value,
    })
}

fn check_sample_rate(
    v: &Validator<'_>,
    codec: &Pick<Codec>,
    rate: &Pick<u32>,
) -> Result<(), ConfigError> {
    let (c, r) = (codec.value, rate.value);
    v.ensure(
        (8_000..=384_000).contains(&r),
        &rate.key,
        "must be between 8000 and 384000 Hz",
    )?;
    match c.allowed_rates() {
        Some(rates) if !rates.contains(&r) => Err(v.error(
            blame(rate, codec),
            format!(
                "{} cannot encode {r} Hz; it takes {rates:?} (use codec \"l16\" for other rates)",
                c.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

fn check_bitrate(
    v: &Validator<'_>,
    codec: &Pick<Codec>,
    bitrate: &Pick<Option<u32>>,
) -> Result<(), ConfigError> {
    let c = codec.value;
    match (c.bitrate_range(), bitrate.value) {
        (Some((lo, hi)), Some(b)) if !(lo..=hi).contains(&b) => Err(v.error(
            blame(bitrate, codec),
            format!(
                "bitrate {b} is out of range for {}: use {lo}-{hi} bits per second",
                c.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

fn check_channels(
    v: &Validator<'_>,
    codec: &Pick<Codec>,
    channels: &Pick<Option<u32>>,
) -> Result<(), ConfigError> {
    let (c, max) = (codec.value, codec.value.max_channels());
    match channels.value {
        Some(n) if n == 0 || n > max => Err(v.error(
            // No codec carries zero channels: that one is the channel count's fault.
            if n == 0 {
                &channels.key
            } else {
                blame(channels, codec)
            },
            format!("{} carries 1-{max} channels, not {n}", c.as_str()),
        )),
        _ => Ok(()),
    }
}

fn check_highpass(
    v: &Validator<'_>,
    rate: &Pick<u32>,
    highpass: &Pick<f64>,
) -> Result<(), ConfigError> {
    let hp = highpass.value;
    let nyquist = f64::from(rate.value) / 2.0;
    if hp.is_finite() && hp >= 0.0 && hp < nyquist {
        return Ok(());
    }
    let key = if hp.is_finite() && hp >= 0.0 {
        blame(highpass, rate)
    } else {
        &highpass.key
    };
    Err(v.error(
        key,
        format!(
            "highpass_hz must be 0 (off) or below half the sample rate ({nyquist} Hz), not {hp}"
        ),
    ))
}

/// `frame_ms` is Opus's frame (and packet) duration. The other codecs have fixed
/// frames: one written in the same table as their codec, or a more specific one,
/// is a mistake; one from `[defaults]` under a stream that picks another codec
/// is simply not used.
fn check_frame(
    v: &Validator<'_>,
    codec: &Pick<Codec>,
    frame: &Pick<Option<u32>>,
    bitrate: &Pick<Option<u32>>,
) -> Result<(), ConfigError> {
    let Some(ms) = frame.value else {
        return Ok(());
    };
    v.ensure(
        FRAME_MS.contains(&ms),
        &frame.key,
        format!("must be one of {FRAME_MS:?} (Opus frame durations in ms), not {ms}"),
    )?;
    let c = codec.value;
    if c != Codec::Opus && frame.rank <= codec.rank {
        return Err(v.error(
            blame(frame, codec),
            format!(
                "frame_ms applies to opus only; {} has frames of its own length",
                c.as_str()
            ),
        ));
    }
    // Opus in RTP is never split: a frame must fit in one network packet.
    if let (Codec::Opus, Some(b)) = (c, bitrate.value) {
        let bytes = opus_packet_bytes(b, ms);
        if bytes > MAX_OPUS_PACKET {
            let fits = default_frame_ms(b);
            return Err(v.error(
                blame(frame, bitrate),
                format!(
                    "frame_ms {ms} at {b} bits per second makes packets of about {bytes} bytes, \
                     more than one network packet carries ({MAX_OPUS_PACKET}): use frame_ms {fits} or less"
                ),
            ));
        }
    }
    Ok(())
}

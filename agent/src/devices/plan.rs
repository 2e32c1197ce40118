//! Fitting what a stream should be (the wish, from the config) to what a capture
//! device can do (its alternate settings), as a pure function.
//!
//! Rules: capture at the wished rate when the device offers it (48 kHz by default,
//! what BirdNET expects), otherwise at the nearest rate above it (or the highest
//! below) and resample; capture the device's native channel count and mix to the
//! wished count; prefer S16, then 24- and 32-bit formats. An impossible wish is an
//! error with a reason, never a panic. Rates up to 384 kHz are ordinary numbers here.

use std::fmt;

use super::asound::{AltSetting, Rates, SampleFormat};

/// What the configuration asks of a device's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wish {
    pub sample_rate: u32,
    /// `None`: the device's native count, limited to `max_channels`.
    pub channels: Option<u32>,
    /// The codec's limit (Opus: 2).
    pub max_channels: u32,
}

/// How a device is captured and what the stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub interface: u32,
    pub altset: u32,
    pub format: SampleFormat,
    pub capture_rate: u32,
    pub capture_channels: u32,
    pub stream_rate: u32,
    pub stream_channels: u32,
}

impl Plan {
    pub fn resamples(&self) -> bool {
        self.capture_rate != self.stream_rate
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The device has no capture stream (a speaker, a playback-only adapter).
    NoCapture,
    /// It captures only in formats harkd cannot use (DSD, big-endian, ...).
    NoUsableFormat { offered: Vec<String> },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoCapture => write!(f, "the device has no capture stream (playback only)"),
            PlanError::NoUsableFormat { offered } => write!(
                f,
                "the device captures only in formats harkd cannot use: {}",
                offered.join(", ")
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// Preference order of sample formats (lower is better).
fn format_rank(f: &SampleFormat) -> Option<u8> {
    match f {
        SampleFormat::S16Le => Some(0),
        SampleFormat::S24_3Le => Some(1),
        SampleFormat::S24Le => Some(2),
        SampleFormat::S32Le => Some(3),
        SampleFormat::FloatLe => Some(4),
        SampleFormat::S8 | SampleFormat::U8 => Some(5),
        SampleFormat::Other(_) => None,
    }
}

fn best_format(alt: &AltSetting) -> Option<&SampleFormat> {
    alt.formats
        .iter()
        .filter_map(|f| format_rank(f).map(|r| (r, f)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, f)| f)
}

/// The rate to capture at when `wanted` is not offered: the lowest offered rate
/// above it (downsampling keeps all the wanted band), else the highest below.
fn nearest_rate(alts: &[&AltSetting], wanted: u32) -> u32 {
    let offered: Vec<u32> = alts
        .iter()
        .flat_map(|a| match &a.rates {
            Rates::List(l) => l.clone(),
            Rates::Range { min, max } => vec![*min, *max],
        })
        .collect();
    offered
        .iter()
        .copied()
        .filter(|r| *r > wanted)
        .min()
        .or_else(|| offered.iter().copied().max())
        .unwrap_or(wanted)
}

pub fn fit(capture: &[AltSetting], wish: Wish) -> Result<Plan, PlanError> {
    if capture.is_empty() {
        return Err(PlanError::NoCapture);
    }
    let usable: Vec<&AltSetting> = capture
        .iter()
        .filter(|a| best_format(a).is_some())
        .collect();
    if usable.is_empty() {
        let mut offered: Vec<String> = capture
            .iter()
            .flat_map(|a| a.formats.iter().map(|f| f.as_str().to_string()))
            .collect();
        offered.dedup();
        return Err(PlanError::NoUsableFormat { offered });
    }
    let capture_rate = if usable.iter().any(|a| a.rates.contains(wish.sample_rate)) {
        wish.sample_rate
    } else {
        nearest_rate(&usable, wish.sample_rate)
    };
    let at_rate: Vec<&AltSetting> = usable
        .into_iter()
        .filter(|a| a.rates.contains(capture_rate))
        .collect();
    // Prefer the wished channel count if offered, else the most channels (the
    // device's native layout); then the best format; then the lowest altset.
    let alt = at_rate
        .iter()
        .min_by_key(|a| {
            let exact = wish.channels == Some(a.channels);
            let rank = best_format(a).and_then(format_rank).unwrap_or(u8::MAX);
            (
                !exact,
                std::cmp::Reverse(a.channels),
                rank,
                a.interface,
                a.altset,
            )
        })
        .copied()
        .ok_or(PlanError::NoCapture)?;
    let format = best_format(alt).cloned().ok_or(PlanError::NoCapture)?;
    let stream_channels = wish
        .channels
        .unwrap_or(alt.channels)
        .min(wish.max_channels)
        .max(1);
    Ok(Plan {
        interface: alt.interface,
        altset: alt.altset,
        format,
        capture_rate,
        capture_channels: alt.channels,
        stream_rate: wish.sample_rate,
        stream_channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alt(altset: u32, formats: &[&str], channels: u32, rates: Rates) -> AltSetting {
        AltSetting {
            interface: 1,
            altset,
            formats: formats.iter().map(|f| SampleFormat::parse(f)).collect(),
            channels,
            rates,
            bits: None,
        }
    }
    fn list(r: &[u32]) -> Rates {
        Rates::List(r.to_vec())
    }
    const OPUS48: Wish = Wish {
        sample_rate: 48_000,
        channels: None,
        max_channels: 2,
    };

    #[test]
    fn table() {
        struct Case {
            what: &'static str,
            caps: Vec<AltSetting>,
            wish: Wish,
            want: Result<(u32, u32, &'static str, u32, u32), PlanError>,
        }
        let l16 = |rate, ch| Wish {
            sample_rate: rate,
            channels: ch,
            max_channels: 8,
        };
        let cases = vec![
            Case {
                what: "mono mic at 48k",
                caps: vec![alt(1, &["S16_LE"], 1, list(&[44100, 48000]))],
                wish: OPUS48,
                want: Ok((48000, 1, "S16_LE", 48000, 1)),
            },
            Case {
                what: "CM108 style: 44.1k and 48k, mono",
                caps: vec![alt(1, &["S16_LE"], 1, list(&[48000, 44100]))],
                wish: OPUS48,
                want: Ok((48000, 1, "S16_LE", 48000, 1)),
            },
            Case {
                what: "44.1k only: resample up",
                caps: vec![alt(1, &["S16_LE"], 2, list(&[44100]))],
                wish: OPUS48,
                want: Ok((44100, 2, "S16_LE", 48000, 2)),
            },
            Case {
                what: "16k only (a cheap headset): capture at 16k, resample",
                caps: vec![alt(1, &["S16_LE"], 1, list(&[8000, 16000]))],
                wish: OPUS48,
                want: Ok((16000, 1, "S16_LE", 48000, 1)),
            },
            Case {
                what: "96k and 192k only: downsample from the nearest above",
                caps: vec![alt(1, &["S24_3LE"], 2, list(&[96000, 192000]))],
                wish: OPUS48,
                want: Ok((96000, 2, "S24_3LE", 48000, 2)),
            },
            Case {
                what: "bat detector at 384k, l16",
                caps: vec![alt(1, &["S16_LE"], 1, list(&[384000]))],
                wish: l16(384_000, None),
                want: Ok((384000, 1, "S16_LE", 384000, 1)),
            },
            Case {
                what: "continuous range",
                caps: vec![alt(
                    1,
                    &["S32_LE"],
                    2,
                    Rates::Range {
                        min: 8000,
                        max: 192000,
                    },
                )],
                wish: l16(176_400, None),
                want: Ok((176400, 2, "S32_LE", 176400, 2)),
            },
            Case {
                what: "8 inputs, opus: native 8 captured, mixed to 2",
                caps: vec![alt(1, &["S32_LE"], 8, list(&[44100, 48000, 96000]))],
                wish: OPUS48,
                want: Ok((48000, 8, "S32_LE", 48000, 2)),
            },
            Case {
                what: "8 inputs, l16 keeps 8",
                caps: vec![alt(1, &["S32_LE"], 8, list(&[48000]))],
                wish: l16(48_000, None),
                want: Ok((48000, 8, "S32_LE", 48000, 8)),
            },
            Case {
                what: "two altsets: the wished channel count wins",
                caps: vec![
                    alt(1, &["S16_LE"], 2, list(&[48000])),
                    alt(2, &["S16_LE"], 1, list(&[48000])),
                ],
                wish: Wish {
                    channels: Some(1),
                    ..OPUS48
                },
                want: Ok((48000, 1, "S16_LE", 48000, 1)),
            },
            Case {
                what: "S16 preferred over S24 on the same altset",
                caps: vec![alt(1, &["S24_3LE", "S16_LE"], 2, list(&[48000]))],
                wish: OPUS48,
                want: Ok((48000, 2, "S16_LE", 48000, 2)),
            },
            Case {
                what: "playback only",
                caps: vec![],
                wish: OPUS48,
                want: Err(PlanError::NoCapture),
            },
            Case {
                what: "DSD only",
                caps: vec![alt(1, &["DSD_U32_BE"], 2, list(&[352800]))],
                wish: OPUS48,
                want: Err(PlanError::NoUsableFormat {
                    offered: vec!["DSD_U32_BE".into()],
                }),
            },
        ];
        for c in cases {
            let got = fit(&c.caps, c.wish).map(|p| {
                (
                    p.capture_rate,
                    p.capture_channels,
                    p.format.as_str().to_string(),
                    p.stream_rate,
                    p.stream_channels,
                )
            });
            let want = c.want.map(|(a, b, f, d, e)| (a, b, f.to_string(), d, e));
            assert_eq!(got, want, "{}", c.what);
        }
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            PlanError::NoCapture.to_string(),
            "the device has no capture stream (playback only)"
        );
    }
}

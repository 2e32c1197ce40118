//! Capabilities of a card that has no USB stream report (onboard audio, HDMI
//! capture, snd-aloop), asked of ALSA itself: open the capture PCM without
//! blocking, read the hw_params ranges, close it. Only when the device is free:
//! a busy device is not probed (and never disturbed); GStreamer then negotiates
//! with it when its pipeline starts.

use alsa::Direction;
use alsa::pcm::{Format, HwParams, PCM};

use super::asound::{AltSetting, Rates, SampleFormat};

const FORMATS: &[(Format, SampleFormat)] = &[
    (Format::S16LE, SampleFormat::S16Le),
    (Format::S243LE, SampleFormat::S24_3Le),
    (Format::S24LE, SampleFormat::S24Le),
    (Format::S32LE, SampleFormat::S32Le),
    (Format::FloatLE, SampleFormat::FloatLe),
];

/// The capture capabilities of ALSA device `device` ("hw:2,0"), or why not.
pub fn probe(device: &str) -> Result<AltSetting, String> {
    let pcm = PCM::new(device, Direction::Capture, true).map_err(|e| format!("{device}: {e}"))?;
    let hw = HwParams::any(&pcm).map_err(|e| format!("{device}: {e}"))?;
    let formats: Vec<SampleFormat> = FORMATS
        .iter()
        .filter(|(f, _)| hw.test_format(*f).is_ok())
        .map(|(_, s)| s.clone())
        .collect();
    if formats.is_empty() {
        return Err(format!("{device}: no capture format harkd can use"));
    }
    let channels = hw
        .get_channels_max()
        .map_err(|e| format!("{device}: {e}"))?;
    let (min, max) = (
        hw.get_rate_min().map_err(|e| format!("{device}: {e}"))?,
        hw.get_rate_max().map_err(|e| format!("{device}: {e}"))?,
    );
    Ok(AltSetting {
        interface: 0,
        altset: 0,
        formats,
        // Plugins report "any number of channels"; no real card has 256 inputs.
        channels: channels.clamp(1, 64),
        rates: Rates::Range {
            min: min.max(1),
            max: max.clamp(1, 768_000),
        },
        bits: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_an_alsa_pcm_and_reports_a_missing_one() {
        // The `null` PCM exists wherever alsa-lib does; it takes any format.
        let alt = probe("null").unwrap();
        assert!(alt.formats.contains(&SampleFormat::S16Le));
        assert!(alt.rates.contains(48_000));
        assert!(alt.channels >= 2);
        let e = probe("hw:CARD=NoSuchCard,DEV=0").unwrap_err();
        assert!(e.starts_with("hw:CARD=NoSuchCard,DEV=0: "), "{e}");
    }
}

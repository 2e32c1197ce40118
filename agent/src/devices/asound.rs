//! Parsing of `/proc/asound/cardN/stream*`, the capability report of a USB audio
//! device (written by the kernel's snd-usb-audio, `sound/usb/proc.c`), and of
//! `/proc/asound/cardN/usbid`.
//!
//! Owns: turning that text into [`AltSetting`]s. Must not touch: files (the caller
//! reads them, under whatever root prefix) or decisions (see `plan.rs`). The parser
//! is tolerant: unknown lines are skipped, and a truncated file yields the
//! alternate settings that were complete.

use std::fmt;

/// A PCM sample format, as the kernel names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SampleFormat {
    S16Le,
    S24Le,
    S24_3Le,
    S32Le,
    FloatLe,
    U8,
    S8,
    /// Anything else (DSD, big-endian, ...), kept by name.
    Other(String),
}

impl SampleFormat {
    pub fn parse(s: &str) -> SampleFormat {
        match s {
            "S16_LE" => SampleFormat::S16Le,
            "S24_LE" => SampleFormat::S24Le,
            "S24_3LE" => SampleFormat::S24_3Le,
            "S32_LE" => SampleFormat::S32Le,
            "FLOAT_LE" => SampleFormat::FloatLe,
            "U8" => SampleFormat::U8,
            "S8" => SampleFormat::S8,
            other => SampleFormat::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            SampleFormat::S16Le => "S16_LE",
            SampleFormat::S24Le => "S24_LE",
            SampleFormat::S24_3Le => "S24_3LE",
            SampleFormat::S32Le => "S32_LE",
            SampleFormat::FloatLe => "FLOAT_LE",
            SampleFormat::U8 => "U8",
            SampleFormat::S8 => "S8",
            SampleFormat::Other(s) => s,
        }
    }
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sample rates of one alternate setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rates {
    /// A discrete list, e.g. `Rates: 44100, 48000`.
    List(Vec<u32>),
    /// A continuous range, e.g. `Rates: 8000 - 48000 (continuous)`.
    Range { min: u32, max: u32 },
}

impl Rates {
    pub fn contains(&self, rate: u32) -> bool {
        match self {
            Rates::List(l) => l.contains(&rate),
            Rates::Range { min, max } => (*min..=*max).contains(&rate),
        }
    }

    /// Every rate worth naming: the list, or the range's ends.
    pub fn listed(&self) -> Vec<u32> {
        match self {
            Rates::List(l) => l.clone(),
            Rates::Range { min, max } => vec![*min, *max],
        }
    }
}

/// One alternate setting of a streaming interface: a way the device can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltSetting {
    pub interface: u32,
    pub altset: u32,
    pub formats: Vec<SampleFormat>,
    pub channels: u32,
    pub rates: Rates,
    /// Significant bits per sample, when reported.
    pub bits: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFile {
    /// The first line: "<Manufacturer> <Product> at usb-..., <speed> speed : <name>".
    pub title: String,
    pub playback: Vec<AltSetting>,
    pub capture: Vec<AltSetting>,
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    None,
    Playback,
    Capture,
}

/// A partly read alternate setting: complete once it has format, channels, rates.
#[derive(Default)]
struct Partial {
    interface: Option<u32>,
    altset: Option<u32>,
    formats: Vec<SampleFormat>,
    channels: Option<u32>,
    rates: Option<Rates>,
    bits: Option<u32>,
}

impl Partial {
    fn finish(self) -> Option<AltSetting> {
        Some(AltSetting {
            interface: self.interface?,
            altset: self.altset?,
            formats: if self.formats.is_empty() {
                return None;
            } else {
                self.formats
            },
            channels: self.channels.filter(|c| *c > 0)?,
            rates: self.rates?,
            bits: self.bits,
        })
    }
}

fn parse_rates(v: &str) -> Option<Rates> {
    let v = v.trim();
    if let Some(range) = v.strip_suffix("(continuous)") {
        let (a, b) = range.split_once('-')?;
        let (min, max) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        return (min <= max && min > 0).then_some(Rates::Range { min, max });
    }
    let list: Vec<u32> = v
        .split(',')
        .map(|r| r.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .ok()?;
    (!list.is_empty() && list.iter().all(|r| *r > 0)).then_some(Rates::List(list))
}

/// Parses the text of a `stream*` file.
pub fn parse_stream(text: &str) -> StreamFile {
    let mut out = StreamFile {
        title: text.lines().next().unwrap_or("").trim().to_string(),
        ..StreamFile::default()
    };
    let mut section = Section::None;
    let mut current: Option<Partial> = None;
    let flush = |cur: &mut Option<Partial>, section: Section, out: &mut StreamFile| {
        if let Some(alt) = cur.take().and_then(Partial::finish) {
            match section {
                Section::Playback => out.playback.push(alt),
                Section::Capture => out.capture.push(alt),
                Section::None => {}
            }
        }
    };
    for line in text.lines().skip(1) {
        let t = line.trim();
        // Section headers start at column 0; content is indented (spaces, or tabs
        // in some copies that went through a terminal).
        if !line.starts_with(char::is_whitespace) {
            flush(&mut current, section, &mut out);
            section = match t {
                "Playback:" => Section::Playback,
                "Capture:" => Section::Capture,
                _ => Section::None,
            };
            continue;
        }
        let Some((key, value)) = t.split_once(':').map(|(k, v)| (k.trim(), v.trim())) else {
            // "Interface 1" and "Altset 1" have no colon.
            if let Some(n) = t.strip_prefix("Interface ").and_then(|v| v.parse().ok()) {
                flush(&mut current, section, &mut out);
                current = Some(Partial {
                    interface: Some(n),
                    ..Partial::default()
                });
            } else if let Some(n) = t.strip_prefix("Altset ").and_then(|v| v.parse().ok())
                && let Some(c) = current.as_mut()
            {
                c.altset = Some(n);
            }
            continue;
        };
        let Some(c) = current.as_mut() else { continue };
        match key {
            "Format" => c.formats = value.split_whitespace().map(SampleFormat::parse).collect(),
            "Channels" => c.channels = value.parse().ok(),
            "Rates" => c.rates = parse_rates(value),
            "Bits" => c.bits = value.parse().ok(),
            _ => {}
        }
    }
    flush(&mut current, section, &mut out);
    out
}

/// Parses `usbid` ("0d8c:0014"): (vendor, product).
pub fn parse_usbid(text: &str) -> Option<(u16, u16)> {
    let (v, p) = text.trim().split_once(':')?;
    Some((
        u16::from_str_radix(v, 16).ok()?,
        u16::from_str_radix(p, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Layout as printed by sound/usb/proc.c (proc_dump_substream_formats).
    const MIC: &str = "\
GeneralPlus USB Audio Device at usb-3f980000.usb-1.3, full speed : USB Audio

Capture:
  Status: Stop
  Interface 1
    Altset 1
    Format: S16_LE
    Channels: 1
    Endpoint: 0x82 (2 IN) (ASYNC)
    Rates: 44100, 48000
    Bits: 16
    Channel map: MONO
";

    #[test]
    fn a_simple_mic() {
        let s = parse_stream(MIC);
        assert!(s.title.starts_with("GeneralPlus USB Audio Device at usb-"));
        assert!(s.playback.is_empty());
        assert_eq!(
            s.capture,
            vec![AltSetting {
                interface: 1,
                altset: 1,
                formats: vec![SampleFormat::S16Le],
                channels: 1,
                rates: Rates::List(vec![44100, 48000]),
                bits: Some(16),
            }]
        );
    }

    #[test]
    fn ranges_multiple_formats_and_sections() {
        let text = "\
X at usb-1, high speed : USB Audio

Playback:
  Status: Running
    Interface = 1
    Altset = 1
    Packet Size = 200
    Momentary freq = 48000 Hz (0x6.0000)
  Interface 1
    Altset 1
    Format: S32_LE
    Channels: 2
    Endpoint: 0x01 (1 OUT) (ASYNC)
    Rates: 44100, 48000, 88200, 96000, 176400, 192000, 352800, 384000
    Data packet interval: 125 us
    Bits: 24

Capture:
  Status: Stop
  Interface 2
    Altset 1
    Format: S16_LE S24_3LE
    Channels: 8
    Endpoint: 0x82 (2 IN) (ASYNC)
    Rates: 8000 - 384000 (continuous)
    Bits: 24
  Interface 2
    Altset 2
    Format: S32_LE
    Channels: 2
    Rates: 192000
";
        let s = parse_stream(text);
        assert_eq!(s.playback.len(), 1);
        assert!(s.playback[0].rates.contains(384_000));
        assert_eq!(s.capture.len(), 2);
        assert_eq!(
            s.capture[0].formats,
            vec![SampleFormat::S16Le, SampleFormat::S24_3Le]
        );
        assert_eq!(
            s.capture[0].rates,
            Rates::Range {
                min: 8000,
                max: 384_000
            }
        );
        assert!(s.capture[0].rates.contains(250_000));
        assert_eq!(s.capture[1].channels, 2);
        assert_eq!(s.capture[1].rates, Rates::List(vec![192_000]));
    }

    #[test]
    fn unknown_lines_and_truncation_are_tolerated() {
        let text = format!("{MIC}  Interface 2\n    Altset 1\n    Format: S24_3LE\n    Chan");
        let s = parse_stream(&text);
        // The second altset was cut before its channels and rates: dropped.
        assert_eq!(s.capture.len(), 1);
        let garbage = "junk\n\nCapture:\n  what is this\n  Interface x\n    Rates: fast\n";
        assert!(parse_stream(garbage).capture.is_empty());
        assert_eq!(parse_stream("").capture, vec![]);
        let odd = MIC.replace("Rates: 44100, 48000", "Rates: 44100, oops");
        assert!(parse_stream(&odd).capture.is_empty());
    }

    #[test]
    fn tab_indented_copies_parse_too() {
        let tabbed = MIC.replace("    ", "\t").replace("  ", "\t");
        assert_eq!(parse_stream(&tabbed).capture, parse_stream(MIC).capture);
        assert_eq!(parse_stream(&tabbed).capture.len(), 1);
    }

    #[test]
    fn usbid() {
        assert_eq!(parse_usbid("0d8c:0014\n"), Some((0x0d8c, 0x0014)));
        assert_eq!(parse_usbid("zz:0014"), None);
        assert_eq!(parse_usbid(""), None);
    }
}

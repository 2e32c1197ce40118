//! `[[stream]]`: name, source (tone or alsa) and encoding of each configured stream.

use std::collections::BTreeSet;

use super::locate::{Seg, Validator, alsa_buffer, at};
use super::schema::{RawSettings, RawStream, default_alsa_buffer_ms};
use super::{ConfigError, Source, SourceKind, StreamSpec, encoding, validate_stream_name};

pub(super) fn validate(
    v: &Validator<'_>,
    raw: &[RawStream],
    defaults: &RawSettings,
) -> Result<Vec<StreamSpec>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut streams = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let table = [Seg::Key("stream"), Seg::Index(i)];
        let name = at(&table, "name");
        validate_stream_name(&s.name).map_err(|m| v.error(&name, m))?;
        v.ensure(
            names.insert(s.name.clone()),
            &name,
            format!("duplicate stream name {:?}; names must be unique", s.name),
        )?;
        let source = match s.source {
            SourceKind::Tone => tone(v, &table, s)?,
            SourceKind::Alsa => alsa(v, &table, s)?,
        };
        // Per-stream settings override [defaults], which override the built-ins.
        let settings = encoding::layered(v, &table, &s.settings(), defaults)?;
        streams.push(StreamSpec {
            name: s.name.clone(),
            source,
            encoding: settings.encoding(settings.channels.unwrap_or(1)),
            record: settings.record,
        });
    }
    Ok(streams)
}

fn tone(v: &Validator<'_>, table: &[Seg], s: &RawStream) -> Result<Source, ConfigError> {
    let key = |k| at(table, k);
    v.ensure(
        s.device.is_none(),
        &key("device"),
        "only an alsa source has a device",
    )?;
    v.ensure(
        s.alsa_buffer_ms.is_none(),
        &key("alsa_buffer_ms"),
        "only an alsa source has a buffer",
    )?;
    let freq_hz = s.tone_hz.unwrap_or(440.0);
    v.ensure(
        freq_hz.is_finite() && (1.0..=20_000.0).contains(&freq_hz),
        &key("tone_hz"),
        "must be between 1 and 20000 Hz",
    )?;
    let level_dbfs = s.tone_dbfs.unwrap_or(-20.0);
    v.ensure(
        level_dbfs.is_finite() && (-100.0..=0.0).contains(&level_dbfs),
        &key("tone_dbfs"),
        "must be between -100 and 0 dBFS",
    )?;
    Ok(Source::Tone {
        freq_hz,
        level_dbfs,
    })
}

fn alsa(v: &Validator<'_>, table: &[Seg], s: &RawStream) -> Result<Source, ConfigError> {
    let key = |k| at(table, k);
    for (k, given) in [("tone_hz", s.tone_hz), ("tone_dbfs", s.tone_dbfs)] {
        v.ensure(given.is_none(), &key(k), "only a tone source has a tone")?;
    }
    let device = match &s.device {
        Some(d) if !d.trim().is_empty() && !d.chars().any(char::is_control) => d.clone(),
        Some(_) => {
            return Err(v.error(&key("device"), "device is empty or has control characters"));
        }
        None => {
            return Err(v.error(
                &key("source"),
                "an alsa source needs device = \"hw:CARD=...\" (see `arecord -L`)",
            ));
        }
    };
    let buffer_ms = s.alsa_buffer_ms.unwrap_or_else(default_alsa_buffer_ms);
    let buffer = alsa_buffer(v, &key("alsa_buffer_ms"), buffer_ms)?;
    Ok(Source::Alsa { device, buffer })
}

//! Where a key is written: key paths ([`Seg`]) and the [`Validator`] that turns
//! a problem at a key into a [`ConfigError`] with the file, line and column.
//! The leaf of the validators: every section's module uses it, it uses none.

use std::path::Path;
use std::time::Duration;

use super::ConfigError;
use super::parse::line_col;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// `prefix` followed by `key`: `at(&[Key("rtsp")], "port")` is `rtsp.port`.
pub(super) fn at(prefix: &[Seg], key: &'static str) -> Vec<Seg> {
    let mut segs = prefix.to_vec();
    segs.push(Seg::Key(key));
    segs
}

/// Turns a key path into an error at the position of that key in the file.
pub(super) struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> Validator<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Validator {
            path,
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    pub fn error(&self, segs: &[Seg], message: impl Into<String>) -> ConfigError {
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
        let (line, col) = self
            .locate(segs)
            .map_or((1, 1), |o| line_col(self.text.as_bytes(), o));
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            col,
            key,
            message: message.into(),
        }
    }

    /// `Err(error(segs, message))` unless `ok`.
    pub fn ensure(
        &self,
        ok: bool,
        segs: &[Seg],
        message: impl Into<String>,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.error(segs, message))
        }
    }

    /// Whether the key at `segs` is written in the file (rather than defaulted).
    pub fn is_written(&self, segs: &[Seg]) -> bool {
        let Some(doc) = self.doc.as_ref() else {
            return false;
        };
        let mut item: &toml_edit::Item = doc.as_item();
        for seg in segs {
            let next = match seg {
                Seg::Key(k) => item.get(k),
                Seg::Index(i) => item.get(*i),
            };
            let Some(next) = next else { return false };
            item = next;
        }
        true
    }

    /// Byte offset of the value at `segs`, or of its nearest enclosing table.
    fn locate(&self, segs: &[Seg]) -> Option<usize> {
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

/// A capture ring buffer (`[devices]` or an alsa `[[stream]]`), 20-5000 ms.
pub(super) fn alsa_buffer(
    v: &Validator<'_>,
    key: &[Seg],
    ms: u64,
) -> Result<Duration, ConfigError> {
    v.ensure(
        (20..=5_000).contains(&ms),
        key,
        "must be between 20 and 5000",
    )?;
    Ok(Duration::from_millis(ms))
}

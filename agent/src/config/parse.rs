//! Bytes to [`RawConfig`]: the file must be UTF-8 text with content, TOML, and of
//! the schema's shape. Every error carries the line and column it was found at.

use std::path::Path;

use super::ConfigError;
use super::schema::RawConfig;

/// The file's text: refuses binary garbage and files with nothing but comments.
pub(super) fn text<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(bytes, e.valid_up_to());
        file_error(
            path,
            line,
            col,
            format!(
                "the file is not UTF-8 text (invalid byte at offset {}); is this the right file?",
                e.valid_up_to()
            ),
        )
    })?;
    let has_content = text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    });
    if !has_content {
        return Err(file_error(
            path,
            1,
            1,
            "the file is empty; see configs/hark.toml for a documented example".into(),
        ));
    }
    Ok(text)
}

fn file_error(path: &Path, line: usize, col: usize, message: String) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        line,
        col,
        key: "(file)".into(),
        message,
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(super) fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
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

/// TOML syntax, then the schema (types, unknown keys, enum variants).
pub(super) fn raw(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
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
            Some(field) => {
                // The path may or may not end with the field already.
                let table = if key_path == field {
                    ""
                } else {
                    key_path
                        .strip_suffix(&format!(".{field}"))
                        .unwrap_or(&key_path)
                };
                match table.trim_matches('.') {
                    "" => toml_key(&field),
                    table => format!("{table}.{}", toml_key(&field)),
                }
            }
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

/// A key as TOML writes it: bare when it can be, else quoted (an empty key
/// `""` would otherwise print as nothing: found by fuzzing).
fn toml_key(key: &str) -> String {
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !key.is_empty() && key.chars().all(bare) {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

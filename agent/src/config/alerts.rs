//! `[[alert]]`: webhooks told when something an operator must know happens.

use std::collections::BTreeSet;
use std::time::Duration;

use super::locate::{Seg, Validator, at};
use super::schema::RawAlert;
use super::{AlertConfig, AlertEvent, ConfigError};

/// Longest alert name (it is a metrics label).
const MAX_NAME_LEN: usize = 32;

pub(super) fn validate(
    v: &Validator<'_>,
    raw: &[RawAlert],
) -> Result<Vec<AlertConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, a) in raw.iter().enumerate() {
        let table = [Seg::Key("alert"), Seg::Index(i)];
        let key = |k| at(&table, k);
        let name = a.name.clone().unwrap_or_else(|| format!("alert-{}", i + 1));
        v.ensure(
            !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            &key("name"),
            format!("1-{MAX_NAME_LEN} letters, digits, '-' or '_'"),
        )?;
        v.ensure(
            names.insert(name.clone()),
            &key("name"),
            format!("duplicate alert name {name:?}"),
        )?;
        check_url(&a.url).map_err(|m| v.error(&key("url"), m))?;
        if let Some(events) = &a.events {
            v.ensure(
                !events.is_empty(),
                &key("events"),
                "an empty list sends nothing; remove the key for every event",
            )?;
        }
        if let Some(secret) = &a.secret {
            v.ensure(
                !secret.is_empty(),
                &key("secret"),
                "empty; remove the key to send unsigned",
            )?;
        }
        if let Some(file) = &a.secret_file {
            v.ensure(
                file.is_absolute(),
                &key("secret_file"),
                format!("{} is not an absolute path", file.display()),
            )?;
            v.ensure(
                a.secret.is_none(),
                &key("secret_file"),
                "set secret or secret_file, not both",
            )?;
        }
        if let Some(ca) = &a.ca_file {
            v.ensure(
                ca.is_absolute(),
                &key("ca_file"),
                format!("{} is not an absolute path", ca.display()),
            )?;
            v.ensure(
                a.url.starts_with("https://"),
                &key("ca_file"),
                "only https:// URLs use a CA file",
            )?;
        }
        v.ensure(
            (1..=120).contains(&a.timeout_s),
            &key("timeout_s"),
            "must be between 1 and 120",
        )?;
        v.ensure(a.retries <= 20, &key("retries"), "must be at most 20")?;
        v.ensure(
            a.remind_s == 0 || a.remind_s >= 60,
            &key("remind_s"),
            "must be 0 (no reminders) or at least 60",
        )?;
        out.push(AlertConfig {
            name,
            url: a.url.clone(),
            events: a.events.as_ref().map_or_else(
                || AlertEvent::ALL.into_iter().collect(),
                |e| e.iter().copied().collect(),
            ),
            format: a.format,
            secret: a.secret.clone(),
            secret_file: a.secret_file.clone(),
            ca_file: a.ca_file.clone(),
            timeout: Duration::from_secs(a.timeout_s),
            retries: a.retries,
            remind: Duration::from_secs(a.remind_s),
        });
    }
    Ok(out)
}

/// An absolute http:// or https:// URL with a host, and nothing a header or
/// a request line could be split by.
fn check_url(url: &str) -> Result<(), String> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the URL contains spaces or control characters".into());
    }
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "{url:?}: only http:// and https:// URLs are sent to"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        assert!(check_url("https://ntfy.sh/hark-attic").is_ok());
        assert!(check_url("http://10.0.0.2:8080/hook?x=1").is_ok());
        assert!(check_url("ftp://example.org/").is_err());
        assert!(check_url("ntfy.sh/topic").is_err());
        assert!(check_url("https:///path").is_err());
        assert!(check_url("http://example.org/a b").is_err());
        assert!(check_url("http://example.org/\r\nX-Injected: 1").is_err());
    }
}

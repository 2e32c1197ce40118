//! The status page (`/`, `/app.js`, `/app.css`: embedded in the binary, nothing
//! loaded from elsewhere), its live events (`/api/v1/events`, Server-Sent
//! Events carrying the same JSON as `/api/v1/status`), and the recordings:
//! `/api/v1/recordings` lists them, `/recordings/<stream>/<file>` downloads one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::{Body, Context, status_json, text, typed};

const INDEX: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

/// Event streams open at once (pages open); more get 503. Each holds one of
/// the endpoint's connections for as long as the page is open.
pub const MAX_EVENT_STREAMS: usize = 16;
/// Events are at most this frequent, however often the state changes.
const MIN_GAP: Duration = Duration::from_millis(200);
/// A comment line this often when nothing changed, so that a page that went
/// away is noticed (its next write fails) and proxies keep the stream open.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Newest recordings listed per stream.
const LISTED: usize = 200;
const CHUNK: usize = 64 * 1024;

pub fn asset(path: &str) -> Response<Body> {
    let (content_type, body) = match path {
        "/" => ("text/html; charset=utf-8", INDEX),
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        _ => ("text/css; charset=utf-8", APP_CSS),
    };
    let mut r = typed(StatusCode::OK, content_type, body);
    let h = r.headers_mut();
    // Only what the binary serves: no inline script, nothing from elsewhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             media-src 'self' blob: mediastream:; img-src 'self' data:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The event stream: one `status` event at once, then one per change (at
/// most one per [`MIN_GAP`]).
pub fn events(ctx: &Arc<Context>) -> Response<Body> {
    let open = ctx.event_streams.fetch_add(1, Ordering::Relaxed);
    if open >= MAX_EVENT_STREAMS {
        ctx.event_streams.fetch_sub(1, Ordering::Relaxed);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_EVENT_STREAMS} pages are open already\n"),
        );
    }
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut snapshots = ctx.snapshot.clone();
        'stream: loop {
            let snap = snapshots.borrow_and_update().clone();
            let json = status_json(&snap, &ctx);
            let event = format!("event: status\ndata: {}\n\n", json.trim_end());
            if tx.send(Bytes::from(event)).await.is_err() {
                break;
            }
            tokio::time::sleep(MIN_GAP).await;
            loop {
                match tokio::time::timeout(KEEPALIVE, snapshots.changed()).await {
                    Ok(Ok(())) => continue 'stream,
                    // The agent is stopping.
                    Ok(Err(_)) => break 'stream,
                    Err(_) => {
                        if tx
                            .send(Bytes::from_static(b": keep-alive\n\n"))
                            .await
                            .is_err()
                        {
                            break 'stream;
                        }
                    }
                }
            }
        }
        ctx.event_streams.fetch_sub(1, Ordering::Relaxed);
    });
    let mut r = Response::new(Body::Channel(rx));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(serde::Serialize)]
struct Listed {
    stream: String,
    file: String,
    bytes: u64,
    modified: String,
    url: String,
}

/// Every stream directory's segments, newest first ([`LISTED`] per stream).
pub async fn recordings(ctx: &Context) -> Response<Body> {
    let Some(dir) = ctx.recordings.clone() else {
        return typed(StatusCode::OK, "application/json", "[]\n");
    };
    match tokio::task::spawn_blocking(move || list(&dir)).await {
        Ok(Ok(list)) => {
            let mut body = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
            body.push('\n');
            typed(StatusCode::OK, "application/json", body)
        }
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot list the recordings: {e}\n"),
        ),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "listing failed\n"),
    }
}

fn list(dir: &Path) -> std::io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let Ok(stream) = entry.file_name().into_string() else {
            continue;
        };
        if !plain_name(&stream) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        let mut mine: Vec<Listed> = files
            .flatten()
            .filter_map(|f| {
                let file = f.file_name().into_string().ok()?;
                crate::recording::parse_name(&stream, &file)?;
                let meta = f.metadata().ok().filter(|m| m.is_file())?;
                Some(Listed {
                    url: format!("/recordings/{stream}/{file}"),
                    stream: stream.clone(),
                    bytes: meta.len(),
                    modified: crate::recording::rfc3339(
                        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    ),
                    file,
                })
            })
            .collect();
        mine.sort_by(|a, b| b.file.cmp(&a.file));
        mine.truncate(LISTED);
        out.extend(mine);
    }
    out.sort_by(|a, b| a.stream.cmp(&b.stream).then(b.file.cmp(&a.file)));
    Ok(out)
}

/// A stream or file name as harkd writes them: no path separators, no dot
/// names, nothing that needs escaping.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// One segment, streamed in chunks. Only names harkd gives its segments are
/// served, from directly inside the stream's directory, never through a link.
pub async fn recording(ctx: &Context, rest: &str) -> Response<Body> {
    let not_found = || text(StatusCode::NOT_FOUND, "no such recording\n");
    let Some(dir) = &ctx.recordings else {
        return not_found();
    };
    let Some((stream, file)) = rest.split_once('/') else {
        return not_found();
    };
    if !plain_name(stream)
        || !plain_name(file)
        || crate::recording::parse_name(stream, file).is_none()
    {
        return not_found();
    }
    let path: PathBuf = dir.join(stream).join(file);
    let opened = tokio::task::spawn_blocking(move || {
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.is_file() {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        Ok((std::fs::File::open(&path)?, meta.len()))
    })
    .await;
    let Ok(Ok((f, len))) = opened else {
        return not_found();
    };
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = f.take(len);
        let mut buf = vec![0u8; CHUNK];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let content_type = match file.rsplit_once('.').map(|(_, e)| e) {
        Some("opus") => "audio/ogg",
        Some("flac") => "audio/flac",
        Some("aac") => "audio/aac",
        _ => "audio/mpeg",
    };
    let mut r = Response::new(Body::Channel(rx));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A segment still being written grows; its length is what it had when
    // opened, and only that much is promised.
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

//! The HTTP endpoint: the status page at `/` (`web.rs`), its live events,
//! recordings to download, WHEP for listening in a browser (`whep.rs`),
//! `/healthz`, `/api/v1/status` (JSON) and `/metrics` (`metrics.rs`).
//!
//! Owns: nothing but its connections. Every answer is computed from the
//! supervisor's latest snapshot; WHEP sessions live on the media thread.
//! Bounded on purpose: at most [`MAX_CONNECTIONS`] at once (more are closed at
//! once), request heads of at most 16 KiB, bodies of at most [`MAX_BODY`], and a
//! client must send its request head within [`HEADER_TIMEOUT`] (slow-loris).
//! With credentials configured (always beyond loopback) every path but
//! `/healthz` asks for them; nothing changes state over GET.

mod auth;
mod body;
mod metrics;
mod web;
mod whep;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use body::Body;

use crate::state::Snapshot;

pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 16 * 1024;
/// The largest request body taken (a WHEP offer is 1-6 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler reads.
pub struct Context {
    pub snapshot: watch::Receiver<Snapshot>,
    pub started: Instant,
    pub rtsp_port: u16,
    /// One per `[[alert]]` webhook.
    pub alerts: Vec<Arc<crate::alerts::send::Stats>>,
    /// WHEP sessions are made there; `None`: WHEP answers 503.
    pub media: Option<crate::media::MediaHandle>,
    /// The credentials asked for, if any.
    pub auth: Option<auth::Credentials>,
    /// `[recording].directory`, when recording is configured.
    pub recordings: Option<PathBuf>,
    /// Event streams open now (`web::MAX_EVENT_STREAMS` at most).
    pub event_streams: AtomicUsize,
}

impl Context {
    /// A context with no media, no credentials and no recordings.
    pub fn new(snapshot: watch::Receiver<Snapshot>, rtsp_port: u16) -> Self {
        Context {
            snapshot,
            started: Instant::now(),
            rtsp_port,
            alerts: Vec::new(),
            media: None,
            auth: None,
            recordings: None,
            event_streams: AtomicUsize::new(0),
        }
    }

    /// Asks every request but `/healthz` for these credentials.
    pub fn with_auth(mut self, auth: Option<&crate::config::RtspAuth>) -> Self {
        self.auth = auth.map(auth::Credentials::new);
        self
    }
}

/// Serves until the listener fails (which ends the daemon).
pub async fn serve(listener: TcpListener, ctx: Context) -> std::io::Result<()> {
    let ctx = Arc::new(ctx);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Full: refuse at once rather than queue without bound.
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            serve_connection(stream, ctx).await;
            drop(permit);
        });
    }
}

/// Serves one connection (a TCP stream; an in-memory pipe in the fuzz target)
/// until the client is done or its request is refused.
pub async fn serve_connection<IO>(io: IO, ctx: Arc<Context>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(route(req, ctx).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), service);
    // Malformed requests and vanished clients end here, and only here.
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    typed(status, "text/plain; charset=utf-8", body)
}

/// An answer of `content_type`.
pub(crate) fn typed(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

async fn route(req: Request<Incoming>, ctx: Arc<Context>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path != "/healthz"
        && let Some(creds) = &ctx.auth
        && !creds.accepts(req.headers().get(header::AUTHORIZATION))
    {
        return auth::challenge();
    }
    let head = req.method() == Method::HEAD;
    let mut r = match path.as_str() {
        "/api/v1/recordings" => {
            if req.method() != Method::GET && !head {
                return not_allowed("GET, HEAD");
            }
            web::recordings(&ctx).await
        }
        "/healthz" | "/api/v1/status" | "/metrics" | "/" | "/app.js" | "/app.css"
        | "/api/v1/events" => {
            if req.method() != Method::GET && !head {
                return not_allowed("GET, HEAD");
            }
            get(&path, &ctx)
        }
        p if p.starts_with("/recordings/") => {
            if req.method() != Method::GET && !head {
                return not_allowed("GET, HEAD");
            }
            web::recording(&ctx, &p["/recordings/".len()..]).await
        }
        p => match whep::route(p) {
            Some(target) => return whep::handle(req, target, &ctx).await,
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    };
    if head {
        *r.body_mut() = Body::empty();
    }
    r
}

fn get(path: &str, ctx: &Arc<Context>) -> Response<Body> {
    let snap = ctx.snapshot.borrow().clone();
    match path {
        "/healthz" => match unhealthy(&snap) {
            None => text(StatusCode::OK, "ok\n"),
            Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
        "/api/v1/status" => typed(StatusCode::OK, "application/json", status_json(&snap, ctx)),
        "/api/v1/events" => web::events(ctx),
        "/metrics" => match metrics::metrics(&snap, ctx) {
            Ok(body) => typed(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            ),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        asset => web::asset(asset),
    }
}

/// `None` when every stream that should run is running; else a one-line reason.
pub fn unhealthy(snap: &Snapshot) -> Option<String> {
    let down: Vec<String> = snap
        .streams
        .iter()
        .filter(|s| !s.running())
        .map(|s| match &s.last_error {
            Some(e) => format!("{} is {} ({e})", s.name, s.state.as_str()),
            None => format!("{} is {}", s.name, s.state.as_str()),
        })
        .collect();
    (!down.is_empty()).then(|| {
        format!(
            "{} of {} streams not running: {}",
            down.len(),
            snap.streams.len(),
            down.join("; ")
        )
    })
}

pub(crate) fn status_json(snap: &Snapshot, ctx: &Context) -> String {
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "state": if unhealthy(snap).is_none() { "running" } else { "degraded" },
        "summary": snap.summary(),
        "uptime_seconds": ctx.started.elapsed().as_secs(),
        "rtsp_port": ctx.rtsp_port,
        "streams": snap.streams,
        "devices": snap.devices,
        "deadman": snap.deadman,
        "pending_restart": snap.pending_restart,
        "dbus": snap.bus,
        "recording": snap.recording,
        "alerts": ctx.alerts.iter().map(|a| a.view()).collect::<Vec<_>>(),
    });
    let mut s = body.to_string();
    s.push('\n');
    s
}

//! WHEP over HTTP: `POST /<stream>/whep` with an SDP offer makes a listener
//! and answers 201 with harkd's SDP and the session's resource in
//! `Location`; `DELETE /<stream>/whep/<id>` ends it. Trickle ICE (PATCH) is
//! not offered (405): the answer carries every candidate.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{Body, Context, MAX_BODY, not_allowed, text, typed};
use crate::media::whep::{Offer, Refusal};

/// The whole offer must arrive within this.
const BODY_WAIT: Duration = Duration::from_secs(5);

pub enum Target {
    /// `/<stream>/whep`
    Endpoint { stream: String },
    /// `/<stream>/whep/<id>`
    Resource { stream: String, id: String },
}

fn stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The WHEP target `path` names, if any.
pub fn route(path: &str) -> Option<Target> {
    let rest = path.strip_prefix('/')?;
    if let Some(stream) = rest.strip_suffix("/whep") {
        return stream_name(stream).then(|| Target::Endpoint {
            stream: stream.to_string(),
        });
    }
    let (stream, id) = rest.split_once("/whep/")?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (stream_name(stream) && id_ok).then(|| Target::Resource {
        stream: stream.to_string(),
        id: id.to_string(),
    })
}

pub async fn handle(req: Request<Incoming>, target: Target, ctx: &Arc<Context>) -> Response<Body> {
    match target {
        Target::Endpoint { stream } => match *req.method() {
            Method::POST => offer(req, &stream, ctx).await,
            Method::OPTIONS => {
                let mut r = text(StatusCode::NO_CONTENT, "");
                let h = r.headers_mut();
                h.insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
                h.insert("accept-post", HeaderValue::from_static("application/sdp"));
                r
            }
            _ => not_allowed("OPTIONS, POST"),
        },
        Target::Resource { stream, id } => match *req.method() {
            Method::DELETE => {
                let Some(media) = &ctx.media else {
                    return text(StatusCode::NOT_FOUND, "no such session\n");
                };
                if media.whep_end(&stream, &id).await {
                    text(StatusCode::OK, "ended\n")
                } else {
                    text(StatusCode::NOT_FOUND, "no such session\n")
                }
            }
            // Trickle ICE and ICE restarts are not offered.
            _ => not_allowed("DELETE"),
        },
    }
}

async fn offer(req: Request<Incoming>, stream: &str, ctx: &Arc<Context>) -> Response<Body> {
    let sdp_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        });
    if !sdp_type {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a WHEP offer is Content-Type: application/sdp\n",
        );
    }
    if !ctx
        .snapshot
        .borrow()
        .streams
        .iter()
        .any(|s| s.name == stream)
    {
        return text(StatusCode::NOT_FOUND, format!("no stream named {stream}\n"));
    }
    let Some(media) = &ctx.media else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "listening is not available\n",
        );
    };
    let body =
        match tokio::time::timeout(BODY_WAIT, Limited::new(req.into_body(), MAX_BODY).collect())
            .await
        {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("an offer is at most {MAX_BODY} bytes\n"),
                );
            }
            Err(_) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the offer did not arrive in time\n",
                );
            }
        };
    let Ok(sdp) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "the offer is not UTF-8\n");
    };
    let offer = match Offer::parse(sdp) {
        Ok(o) => o,
        Err(why) => return text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    match media.whep(stream, offer).await {
        Ok(answer) => {
            let mut r = typed(StatusCode::CREATED, "application/sdp", answer.sdp);
            if let Ok(v) = HeaderValue::from_str(&format!("/{stream}/whep/{}", answer.id)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(refusal) => {
            let status = match &refusal {
                Refusal::NoStream(_) => StatusCode::NOT_FOUND,
                Refusal::Offer(_) => StatusCode::BAD_REQUEST,
                Refusal::NotLive(_) | Refusal::Full(_) | Refusal::NoAddress => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                Refusal::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut r = text(status, format!("{refusal}\n"));
            if status == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            }
            r
        }
    }
}

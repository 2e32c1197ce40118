//! The in-process RTSP server (gst-rtsp-server): binding, authentication, one mount
//! per stream, and ending the clients of a stream that goes away.
//!
//! Owns: the `RTSPServer` object and its mounts. Runs on the media thread; each
//! client's requests are handled on a client thread of gst-rtsp-server's pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_rtsp as gst_rtsp;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::gio;
use gstreamer_rtsp_server::gio::prelude::*;
use gstreamer_rtsp_server::prelude::*;

use super::MediaEvent;
use super::fanout::Fanout;
use super::pipeline;
use crate::config::{Codec, RtspConfig};

/// Mount path -> fan-out, read by the RTSP client callbacks to answer DESCRIBE.
pub type Registry = Arc<Mutex<HashMap<String, Arc<Fanout>>>>;

const ROLE: &str = "hark-client";

/// Threads for RTSP clients; beyond this many clients, clients share them.
const CLIENT_THREADS: i32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot listen for RTSP on {addr}: the address is in use or not available (is another harkd or RTSP server running?)"
    )]
    Bind { addr: SocketAddr },
}

pub struct Server {
    pub server: rtsp::RTSPServer,
    auth: Option<rtsp::RTSPAuth>,
    pub registry: Registry,
    /// The port actually bound.
    pub port: u16,
    /// False until the streams configured at start are mounted: until then a
    /// DESCRIBE for a path not mounted yet gets 503 (try again), not 404 (no
    /// such stream), so a client started with the agent does not give up.
    settled: Arc<AtomicBool>,
}

/// Where the start-up warm-up session plays: a leading dot, which no stream name
/// can have.
pub const WARM_UP_PATH: &str = "/.warm-up";

pub fn mount_path(name: &str) -> String {
    format!("/{name}")
}

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Fanout>>> {
    // Map operations are single steps; a poisoned lock holds a consistent map.
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

/// The path of a request URL, or `None` when it is not UTF-8 (such a path cannot
/// name a stream; the server then answers it as an unknown mount).
///
/// The generated bindings (`decode_path_components`, `request_uri`) assume UTF-8
/// and panic on anything else, and a client controls these bytes: a request for
/// `/\xff` crashed the agent. So the C field is read as bytes here.
#[allow(unsafe_code)]
fn request_path(url: &gst_rtsp::RTSPUrl) -> Option<String> {
    use glib::translate::ToGlibPtr;
    let ptr: *const gst_rtsp::ffi::GstRTSPUrl = url.to_glib_none().0;
    // SAFETY: `url` is a valid GstRTSPUrl borrowed for this call; `abspath` is
    // either NULL or a NUL-terminated string owned by it, and is only read here.
    let abspath = unsafe { (*ptr).abspath };
    if abspath.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated, as above; the CStr does not outlive `url`.
    let bytes = unsafe { std::ffi::CStr::from_ptr(abspath) }.to_bytes();
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// The stream path a request URL names, as the server's DESCRIBE hook reads it:
/// the URL parsed by gst-rtsp (as the server parses a request line's URL; it
/// ends at a NUL byte, as C strings do), then its path. `None` when the URL does
/// not parse or its path is not UTF-8. For the fuzz target and its corpus.
#[allow(unsafe_code)]
pub fn path_of_request_url(url: &[u8]) -> Option<String> {
    use glib::translate::FromGlibPtrFull;
    let end = url.iter().position(|b| *b == 0).unwrap_or(url.len());
    let text = std::ffi::CString::new(&url[..end]).ok()?;
    let mut parsed: *mut gst_rtsp::ffi::GstRTSPUrl = std::ptr::null_mut();
    // SAFETY: `text` is NUL-terminated and outlives the call; on success the
    // parser hands over a new GstRTSPUrl ("transfer full") through `parsed`.
    let res = unsafe { gst_rtsp::ffi::gst_rtsp_url_parse(text.as_ptr(), &mut parsed) };
    if res != gst_rtsp::ffi::GST_RTSP_OK || parsed.is_null() {
        return None;
    }
    // SAFETY: non-NULL and owned by us (above); the wrapper frees it.
    let url = unsafe { gst_rtsp::RTSPUrl::from_glib_full(parsed) };
    request_path(&url).map(|p| p.trim_end_matches('/').to_string())
}

/// Turns Nagle's algorithm off on a client's TCP connection.
///
/// Interleaved RTP is a stream of small packets right after small responses; with
/// Nagle on, the first packet after the PLAY response waited for the client's
/// delayed ACK: 40 ms on Linux, measured as 42 ms from PLAY to the first packet.
/// The connection accessor is not in the generated bindings, hence the FFI.
#[allow(unsafe_code)]
fn set_nodelay(client: &rtsp::RTSPClient) {
    use glib::translate::{FromGlibPtrNone, ToGlibPtr};
    const IPPROTO_TCP: i32 = 6;
    const TCP_NODELAY: i32 = 1;
    let client_ptr: *mut rtsp::ffi::GstRTSPClient = client.to_glib_none().0;
    // SAFETY: `client` is alive for this call; the connection it returns is owned
    // by the client ("transfer none") and only borrowed here.
    let conn = unsafe { rtsp::ffi::gst_rtsp_client_get_connection(client_ptr) };
    if conn.is_null() {
        return;
    }
    // SAFETY: `conn` is a valid connection (above); the socket is owned by it
    // ("transfer none"), and `from_glib_none` takes a new reference of our own.
    let socket: Option<gio::Socket> = unsafe {
        let sock = gst_rtsp::ffi::gst_rtsp_connection_get_read_socket(conn);
        (!sock.is_null()).then(|| gio::Socket::from_glib_none(sock))
    };
    if let Some(socket) = socket
        && socket.family() != gio::SocketFamily::Unix
        && let Err(e) = socket.set_option(IPPROTO_TCP, TCP_NODELAY, 1)
    {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an RTSP client");
    }
}

impl Server {
    /// Creates the server and binds it to `ctx`. Call on the media thread.
    pub fn start(cfg: &RtspConfig, ctx: &glib::MainContext) -> Result<Server, ServerError> {
        let server = rtsp::RTSPServer::new();
        server.set_address(&cfg.bind.to_string());
        server.set_service(&cfg.port.to_string());
        // Small, bounded accept backlog: an appliance, not a CDN.
        server.set_backlog(64);
        // Clients on threads of their own, not on the media thread: a DESCRIBE
        // waits (blocking its thread) until the client's media has its first
        // buffer, and a source that stalls just then would hold up every other
        // client and the media thread's commands with it.
        if let Some(pool) = server.thread_pool() {
            pool.set_max_threads(CLIENT_THREADS);
        }

        let auth = cfg.auth.as_ref().map(|a| {
            let auth = rtsp::RTSPAuth::new();
            let token = rtsp::RTSPToken::builder()
                .field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
                .build();
            let basic = rtsp::RTSPAuth::make_basic(&a.user, &a.password);
            auth.add_basic(basic.as_str(), &token);
            server.set_auth(Some(&auth));
            auth
        });

        let registry: Registry = Arc::default();
        let reg = registry.clone();
        let settled = Arc::new(AtomicBool::new(false));
        let is_settled = settled.clone();
        server.connect_client_connected(move |_server, client| {
            set_nodelay(client);
            let reg = reg.clone();
            let is_settled = is_settled.clone();
            // Refuse DESCRIBE with 503 while a stream has no audio, instead of
            // letting the client wait on a media that cannot prepare; and while
            // the agent is still mounting its streams, for a path not there yet.
            client.connect_pre_describe_request(move |_client, ctx| {
                let Some(path) = ctx.uri().and_then(request_path) else {
                    return gst_rtsp::RTSPStatusCode::Ok;
                };
                let path = path.trim_end_matches('/');
                match lock(&reg).get(path) {
                    Some(f) if !f.is_live() => gst_rtsp::RTSPStatusCode::ServiceUnavailable,
                    None if path != WARM_UP_PATH && !is_settled.load(Ordering::Acquire) => {
                        gst_rtsp::RTSPStatusCode::ServiceUnavailable
                    }
                    _ => gst_rtsp::RTSPStatusCode::Ok,
                }
            });
        });

        let addr = SocketAddr::new(cfg.bind, cfg.port);
        server
            .attach(Some(ctx))
            .map_err(|_| ServerError::Bind { addr })?;
        let port = u16::try_from(server.bound_port()).unwrap_or(cfg.port);

        // Sessions whose clients vanished without TEARDOWN expire only when the
        // pool is cleaned; gst-rtsp-server leaves that to the application.
        if let Some(pool) = server.session_pool() {
            let source = glib::timeout_source_new(
                std::time::Duration::from_secs(2),
                Some("hark-session-cleanup"),
                glib::Priority::DEFAULT,
                move || {
                    pool.cleanup();
                    glib::ControlFlow::Continue
                },
            );
            source.attach(Some(ctx));
        }
        Ok(Server {
            server,
            auth,
            registry,
            port,
            settled,
        })
    }

    /// The streams configured at start are mounted: from now on a path that
    /// is not mounted is answered 404.
    pub fn settle(&self) {
        self.settled.store(true, Ordering::Release);
    }

    /// What every factory shares: the system clock (capture and media translate
    /// buffer times exactly) and, with credentials configured, the role allowed in.
    fn configure(&self, factory: &rtsp::RTSPMediaFactory) {
        factory.set_clock(Some(&gst::SystemClock::obtain()));
        if self.auth.is_some() {
            factory.add_role_from_structure(
                &gst::Structure::builder(ROLE)
                    .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                    .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                    .build(),
            );
        }
    }

    /// Mounts a tone of its own at [`WARM_UP_PATH`] for the start-up warm-up
    /// session (see `warm::rtsp_session`); removed again before READY.
    pub fn mount_warm_up(&self, enc: &crate::config::Encoding) {
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&pipeline::tone_media_description(enc));
        factory.set_shared(false);
        factory.set_protocols(gst_rtsp::RTSPLowerTrans::TCP);
        self.configure(&factory);
        if let Some(mounts) = self.server.mount_points() {
            mounts.add_factory(WARM_UP_PATH, factory);
        }
    }

    /// Adds the mount `/<name>`; clients get media fed from `fanout`.
    pub fn mount(&self, name: &str, codec: Codec, fanout: Arc<Fanout>, events: &super::Reports) {
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&pipeline::media_description(codec));
        // One media per client: the capture and encoding are shared upstream, so a
        // media is only an appsrc and a payloader. Unshared media cannot be caught
        // half torn down by the next client's DESCRIBE (the 503 trap in DESIGN.md).
        factory.set_shared(false);
        factory.set_protocols(gst_rtsp::RTSPLowerTrans::UDP | gst_rtsp::RTSPLowerTrans::TCP);
        self.configure(&factory);
        let stream = name.to_string();
        let fan = fanout.clone();
        let events = events.clone();
        factory.connect_media_configure(move |_factory, media| {
            let Some(appsrc) = media
                .element()
                .downcast::<gst::Bin>()
                .ok()
                .and_then(|b| b.by_name("src"))
                .and_then(|e| e.downcast::<gstreamer_app::AppSrc>().ok())
            else {
                tracing::error!(stream = %stream, "client media has no appsrc");
                return;
            };
            // The media's pipeline (the factory put our bin in it before
            // this signal): its threads only deliver.
            match media.element().parent() {
                Some(pipeline) => match pipeline.downcast::<gst::Element>() {
                    Ok(p) => super::sched::deliver_in_background(&p),
                    Err(_) => tracing::debug!("client media's parent is no element"),
                },
                None => tracing::debug!("client media has no pipeline yet"),
            }
            let id = media.as_ptr() as usize;
            fan.attach(id, &appsrc);
            // Clients come and go on threads of their own: each report reads
            // the count afresh, one at a time, so the last one is the truth.
            fan.report_clients(|count| {
                events.send(MediaEvent::Clients {
                    stream: stream.clone(),
                    count,
                });
            });
            let fan = fan.clone();
            let events = events.clone();
            let stream = stream.clone();
            media.connect_unprepared(move |_media| {
                fan.detach(id);
                fan.report_clients(|count| {
                    events.send(MediaEvent::Clients {
                        stream: stream.clone(),
                        count,
                    });
                });
            });
        });
        let path = mount_path(name);
        lock(&self.registry).insert(path.clone(), fanout);
        if let Some(mounts) = self.server.mount_points() {
            mounts.add_factory(&path, factory);
        }
    }

    /// Removes the mount: new clients get 404 from now on.
    pub fn unmount(&self, name: &str) {
        let path = mount_path(name);
        lock(&self.registry).remove(&path);
        if let Some(mounts) = self.server.mount_points() {
            mounts.remove_factory(&path);
        }
    }

    /// Closes every client connection that has a session on `/<name>` (or on any
    /// mount when `name` is `None`) and drops those sessions.
    pub fn close_clients(&self, name: Option<&str>) -> usize {
        let path = name.map(mount_path);
        let matches = |sess: &rtsp::RTSPSession| -> bool {
            let Some(path) = &path else { return true };
            let mut hit = false;
            sess.filter(Some(&mut |_s, sm: &rtsp::RTSPSessionMedia| {
                if sm.matches(path).is_some() {
                    hit = true;
                }
                rtsp::RTSPFilterResult::Keep
            }));
            hit
        };
        let clients = self.server.client_filter(Some(&mut |_server, client| {
            let mut hit = path.is_none();
            client.session_filter(Some(&mut |_c, sess| {
                hit |= matches(sess);
                rtsp::RTSPFilterResult::Keep
            }));
            if hit {
                rtsp::RTSPFilterResult::Ref
            } else {
                rtsp::RTSPFilterResult::Keep
            }
        }));
        if let Some(pool) = self.server.session_pool() {
            pool.filter(Some(&mut |_pool, sess| {
                if matches(sess) {
                    rtsp::RTSPFilterResult::Remove
                } else {
                    rtsp::RTSPFilterResult::Keep
                }
            }));
        }
        for c in &clients {
            c.close();
        }
        clients.len()
    }
}

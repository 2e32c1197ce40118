//! Listening in a browser: one WebRTC session per WHEP listener (RFC 9725's
//! egress twin, as MediaMTX serves it at `/<stream>/whep`), on `webrtcbin`.
//!
//! A session is a pipeline of its own fed by the stream's fan-out like any
//! RTSP client: `appsrc ! [Opus branch] ! rtpopuspay ! webrtcbin`. An Opus
//! stream is sent as it is encoded (no second encode); an L16, AAC or MP3
//! stream is decoded and encoded to Opus in the session, so that work exists
//! only while a browser listens. The browser offers, harkd answers with all of
//! its ICE candidates (host candidates; a STUN server only if configured): no
//! trickle.
//!
//! A listener ends on DELETE of its resource, when its peer connection fails
//! or closes, when its browser stops sending RTCP reports for [`QUIET`] (a tab
//! closed or a phone gone off the network), or with its stream. Sessions are
//! bounded (`http.max_listeners`); each stops on a reaper thread.
//!
//! Owns: the sessions. Runs on the media thread; webrtcbin answers on threads
//! of its own, which only touch the session's atomics and the reply channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app::AppSrc;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

use super::Command;
use super::fanout::Fanout;
use crate::config::Codec;

/// Until the answer is sent (ICE gathering of host candidates takes
/// milliseconds; a STUN server up to a few seconds).
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// From the answer until the browser's DTLS handshake completes.
const CONNECT_WAIT: Duration = Duration::from_secs(15);
/// A connected browser sends RTCP receiver reports every 1-7.5 s (Chrome:
/// 5 s randomised by 0.5-1.5); none for this long and it is gone.
pub const QUIET: Duration = Duration::from_secs(12);
/// ICE gathering of host candidates takes milliseconds; after this the
/// answer goes with the candidates found so far (a STUN server that does not
/// answer), or the session is refused when there are none.
const GATHER_WAIT: Duration = Duration::from_secs(3);
/// How often sessions are looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// An offer with more m-lines than this is refused.
const MAX_MEDIA: u32 = 16;

/// A checked offer.
pub struct Offer {
    sdp: gst_sdp::SDPMessage,
    /// The Opus payload type the browser chose.
    pt: u8,
}

impl std::fmt::Debug for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offer").field("pt", &self.pt).finish()
    }
}

impl Offer {
    /// Checks that `text` is an SDP offer harkd can answer: a session
    /// description with an audio m-line that may receive Opus over
    /// DTLS-SRTP, with ICE credentials and a fingerprint. The reason on
    /// error is for the browser (a 400).
    pub fn parse(text: &str) -> Result<Offer, String> {
        if !text.starts_with("v=0") {
            return Err("not an SDP session description (it must begin with v=0)".into());
        }
        // Browsers hide their addresses behind mDNS names (`<uuid>.local`).
        // webrtcbin would resolve each on a resolver task that holds its ICE
        // agent and, once the session stops, never finishes (GStreamer 1.22):
        // the agent, its thread and its sockets would outlive the session.
        // They are not needed: the browser's checks reach harkd's host
        // candidates and ICE learns its address from them (peer-reflexive).
        let kept: String = text
            .split_inclusive('\n')
            .filter(|line| !mdns_candidate(line))
            .collect();
        let sdp = gst_sdp::SDPMessage::parse_buffer(kept.as_bytes())
            .map_err(|_| "not an SDP session description".to_string())?;
        if sdp.medias_len() == 0 || sdp.medias_len() > MAX_MEDIA {
            return Err(format!(
                "the offer has {} m-lines; 1 to {MAX_MEDIA} are answered",
                sdp.medias_len()
            ));
        }
        let session_attr = |k: &str| sdp.attribute_val(k).is_some();
        let audio = sdp
            .medias()
            .find(|m| m.media() == Some("audio") && m.port() != 0)
            .ok_or("the offer has no audio m-line to answer")?;
        if !audio.proto().is_some_and(|p| p.contains("SAVPF")) {
            return Err("the offer's audio is not DTLS-SRTP (UDP/TLS/RTP/SAVPF)".into());
        }
        for missing in ["ice-ufrag", "ice-pwd", "fingerprint"] {
            if audio.attribute_val(missing).is_none() && !session_attr(missing) {
                return Err(format!("the offer's audio has no a={missing}"));
            }
        }
        if audio.attribute_val("sendonly").is_some() || audio.attribute_val("inactive").is_some() {
            return Err("the offer's audio does not ask to receive (sendonly or inactive)".into());
        }
        let pt = audio
            .attributes()
            .filter(|a| a.key() == "rtpmap")
            .filter_map(|a| a.value())
            .find_map(|v| {
                let (pt, codec) = v.split_once(' ')?;
                codec
                    .to_ascii_lowercase()
                    .starts_with("opus/48000")
                    .then(|| pt.parse::<u8>().ok())
                    .flatten()
                    .filter(|pt| (96..=127).contains(pt))
            })
            .ok_or("the offer's audio does not include Opus (opus/48000/2)")?;
        Ok(Offer { sdp, pt })
    }
}

/// `a=candidate:<foundation> <component> <transport> <priority> <address> ...`
/// with an mDNS `.local` address.
fn mdns_candidate(line: &str) -> bool {
    line.strip_prefix("a=candidate:")
        .and_then(|c| c.split_ascii_whitespace().nth(4))
        .is_some_and(|addr| addr.len() > 6 && addr[addr.len() - 6..].eq_ignore_ascii_case(".local"))
}

/// A session made: its resource id and harkd's answer.
#[derive(Debug)]
pub struct Answer {
    pub id: String,
    pub sdp: String,
}

/// Why no session was made.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no stream named {0}")]
    NoStream(String),
    #[error("{0} has no audio right now; try again in a few seconds")]
    NotLive(String),
    #[error("{0} browsers are listening already (http.max_listeners)")]
    Full(usize),
    #[error("the offer was refused: {0}")]
    Offer(String),
    #[error("cannot make the session: {0}")]
    Failed(String),
    #[error("harkd has no network address to offer the browser (only loopback is up)")]
    NoAddress,
}

/// What webrtcbin's threads tell the media thread about a session.
#[derive(Default)]
struct Liveness {
    answered: AtomicBool,
    connected: AtomicBool,
    /// The peer connection failed or closed.
    ended: AtomicBool,
    /// Milliseconds after the session began that the browser was last heard
    /// (an RTCP report), or 0.
    heard_ms: AtomicU64,
}

struct Session {
    stream: String,
    fanout: Arc<Fanout>,
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    appsrc_id: usize,
    began: Instant,
    live: Arc<Liveness>,
    /// Until the answer is sent.
    reply: Reply,
    _watch: gst::bus::BusWatchGuard,
}

type Reply = Arc<Mutex<Option<oneshot::Sender<Result<Answer, Refusal>>>>>;

/// The sessions, on the media thread.
pub(super) struct Listeners {
    sessions: HashMap<String, Session>,
    max: usize,
    stun: Option<String>,
    events: super::Reports,
    cmd_tx: Sender<Command>,
    ticker: Option<glib::Source>,
    /// Sessions ever made (the ids' uniqueness does not rest on it).
    made: u64,
}

/// The session pipeline for a stream of `codec` answering payload type `pt`.
pub fn description(codec: Codec, pt: u8) -> String {
    // Each codec's literal directly in its arm: the Yocto layer's element
    // check reads a codec's elements from there.
    let decode = match codec {
        Codec::Opus | Codec::L16 => "",
        Codec::Aac => "aacparse ! avdec_aac ! ",
        Codec::Mp3 => "mpegaudioparse ! avdec_mp3 ! ",
    };
    let branch = match codec {
        Codec::Opus => String::new(),
        _ => format!(
            "{decode}audioconvert ! audioresample ! audio/x-raw,rate=48000 ! \
             opusenc bitrate=64000 frame-size=20 ! "
        ),
    };
    format!(
        "appsrc name=src ! {branch}rtpopuspay pt={pt} ! \
         application/x-rtp,media=audio,encoding-name=OPUS,payload={pt},clock-rate=48000 ! \
         webrtcbin name=webrtc bundle-policy=max-bundle"
    )
}

impl Listeners {
    pub fn new(
        max: usize,
        stun: Option<String>,
        events: super::Reports,
        cmd_tx: Sender<Command>,
    ) -> Self {
        Listeners {
            sessions: HashMap::new(),
            max,
            stun,
            events,
            cmd_tx,
            ticker: None,
            made: 0,
        }
    }

    /// Makes a session for `stream` and answers `reply` once its answer is
    /// ready (or it failed). Returns the refusal at once when there is one.
    pub fn open(
        &mut self,
        stream: &str,
        fanout: &Arc<Fanout>,
        codec: Codec,
        offer: Offer,
        reply: oneshot::Sender<Result<Answer, Refusal>>,
    ) {
        if self.sessions.len() >= self.max {
            let _ = reply.send(Err(Refusal::Full(self.max)));
            return;
        }
        if !fanout.is_live() {
            let _ = reply.send(Err(Refusal::NotLive(stream.to_string())));
            return;
        }
        self.made += 1;
        let id = session_id(self.made);
        let reply: Reply = Arc::new(Mutex::new(Some(reply)));
        match self.build(stream, fanout, codec, &offer, &id, &reply) {
            Ok(session) => {
                let webrtc = session.webrtc.clone();
                let live = session.live.clone();
                self.sessions.insert(id.clone(), session);
                self.ensure_ticker();
                negotiate(&webrtc, offer, id, live, reply, self.cmd_tx.clone());
            }
            Err(reason) => {
                if let Some(r) = take(&reply) {
                    let _ = r.send(Err(Refusal::Failed(reason)));
                }
            }
        }
    }

    fn build(
        &self,
        stream: &str,
        fanout: &Arc<Fanout>,
        codec: Codec,
        offer: &Offer,
        id: &str,
        reply: &Reply,
    ) -> Result<Session, String> {
        let pipeline = gst::parse::launch(&description(codec, offer.pt))
            .map_err(|e| format!("cannot build the pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline".to_string())?;
        pipeline.set_property("name", format!("whep-{id}"));
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        super::sched::deliver_in_background(pipeline.upcast_ref());
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<AppSrc>().ok())
            .ok_or("the pipeline has no appsrc")?;
        let webrtc = pipeline.by_name("webrtc").ok_or("no webrtcbin")?;
        if let Some(stun) = &self.stun {
            webrtc.set_property("stun-server", stun);
        }
        quiet_ice(&webrtc);
        let live = Arc::new(Liveness::default());
        let began = Instant::now();
        watch_peer(&webrtc, &live, began);
        let tx = self.cmd_tx.clone();
        let failed_id = id.to_string();
        let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
        let watch = bus
            .add_watch(move |_bus, msg| {
                if let gst::MessageView::Error(e) = msg.view() {
                    tracing::info!(session = %failed_id, error = %e.error(), "WHEP session failed");
                    let _ = tx.try_send(Command::WhepEnd {
                        id: failed_id.clone(),
                        reply: None,
                    });
                }
                glib::ControlFlow::Continue
            })
            .map_err(|e| format!("cannot watch the pipeline: {e}"))?;
        let appsrc_id = appsrc.as_ptr() as usize;
        fanout.attach(appsrc_id, &appsrc);
        self.report(stream, fanout);
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            fanout.detach(appsrc_id);
            self.report(stream, fanout);
            let _ = pipeline.set_state(gst::State::Null);
            return Err(format!("the pipeline refused to start: {e}"));
        }
        Ok(Session {
            stream: stream.to_string(),
            fanout: fanout.clone(),
            pipeline,
            webrtc,
            appsrc_id,
            began,
            live,
            reply: reply.clone(),
            _watch: watch,
        })
    }

    /// Ends session `id` (of `stream`, when given); false if there was none.
    pub fn end(&mut self, id: &str, stream: Option<&str>) -> bool {
        if stream.is_some_and(|s| self.sessions.get(id).is_some_and(|x| x.stream != s)) {
            return false;
        }
        let Some(s) = self.sessions.remove(id) else {
            return false;
        };
        let (stream, fanout) = (s.stream.clone(), s.fanout.clone());
        // A session ended before its answer (its pipeline failed, its stream
        // went): the offer is told so now, not when its wait runs out.
        if let Some(r) = take(&s.reply) {
            let _ = r.send(Err(Refusal::Failed(
                "the session ended before it was answered".into(),
            )));
        }
        close(id, s);
        self.report(&stream, &fanout);
        true
    }

    /// Ends every listener of `stream` (it is unmounted).
    pub fn end_stream(&mut self, stream: &str) {
        let ids: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.stream == stream)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.end(&id, None);
        }
    }

    /// Ends every session (the agent stops).
    pub fn end_all(&mut self) {
        for (id, s) in std::mem::take(&mut self.sessions) {
            close(&id, s);
        }
    }

    /// Ends the sessions whose browser is gone or never came; answers those
    /// still gathering after [`GATHER_WAIT`] with the candidates they have.
    pub fn tick(&mut self) {
        for (id, s) in &self.sessions {
            if !s.live.answered.load(Ordering::Relaxed) && s.began.elapsed() > GATHER_WAIT {
                send_answer(&s.webrtc, &s.reply, id, &s.live, false);
            }
        }
        let gone: Vec<(String, &'static str)> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| gone(s).map(|why| (id.clone(), why)))
            .collect();
        for (id, why) in gone {
            tracing::info!(session = %id, why, "WHEP listener gone");
            self.end(&id, None);
        }
        if self.sessions.is_empty()
            && let Some(t) = self.ticker.take()
        {
            t.destroy();
        }
    }

    /// Listeners count as the stream's clients.
    fn report(&self, stream: &str, fanout: &Fanout) {
        fanout.report_clients(|count| {
            self.events.send(super::MediaEvent::Clients {
                stream: stream.to_string(),
                count,
            });
        });
    }

    fn ensure_ticker(&mut self) {
        if self.ticker.is_some() {
            return;
        }
        let tx = self.cmd_tx.clone();
        let source = glib::timeout_source_new(
            TICK,
            Some("hark-whep"),
            glib::Priority::DEFAULT,
            move || {
                let _ = tx.try_send(Command::WhepTick);
                glib::ControlFlow::Continue
            },
        );
        source.attach(glib::MainContext::thread_default().as_ref());
        self.ticker = Some(source);
    }
}

/// Why a session should end now, if it should.
fn gone(s: &Session) -> Option<&'static str> {
    let age = s.began.elapsed();
    let l = &s.live;
    if l.ended.load(Ordering::Relaxed) {
        return Some("the peer connection failed or closed");
    }
    if !l.answered.load(Ordering::Relaxed) {
        return (age > GATHER_WAIT).then_some("no answer could be made");
    }
    if !l.connected.load(Ordering::Relaxed) {
        return (age > CONNECT_WAIT).then_some("the browser never connected");
    }
    let heard = Duration::from_millis(l.heard_ms.load(Ordering::Relaxed));
    // Before any report, the connection's start counts as heard.
    (age.saturating_sub(heard) > QUIET).then_some("no RTCP from the browser")
}

/// Unlinks a session from its stream and stops it on a reaper thread
/// (webrtcbin's teardown joins its ICE and DTLS threads).
fn close(id: &str, s: Session) {
    s.fanout.detach(s.appsrc_id);
    let id = id.to_string();
    let spawned = std::thread::Builder::new().name("hark-reap".into()).spawn({
        let pipeline = s.pipeline.clone();
        move || {
            let _ = pipeline.set_state(gst::State::Null);
            tracing::debug!(session = %id, "WHEP session stopped");
        }
    });
    if spawned.is_err() {
        let _ = s.pipeline.set_state(gst::State::Null);
    }
}

/// Host candidates over UDP only: no UPnP (libnice would ask the LAN's
/// router to open ports for every session, over SSDP multicast, on a thread
/// of its own) and no ICE-TCP sockets (browsers reach a LAN host over UDP).
fn quiet_ice(webrtc: &gst::Element) {
    let ice = webrtc.property::<glib::Object>("ice-agent");
    if ice.find_property("ice-tcp").is_some() {
        ice.set_property("ice-tcp", false);
    }
    let agent = ice
        .find_property("agent")
        .map(|_| ice.property::<glib::Object>("agent"));
    match agent {
        Some(agent) if agent.find_property("upnp").is_some() => agent.set_property("upnp", false),
        _ => tracing::warn!("webrtcbin's ICE agent has no upnp setting"),
    }
}

/// Sixteen hex digits no one can guess: the resource's id.
fn session_id(n: u64) -> String {
    let mut bytes = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        // Never seen; still unique within this run.
        bytes = (n ^ fastrand::u64(..)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Follows the peer connection: connected, failed or closed, and each RTCP
/// report from the browser (rtpbin's `on-ssrc-active`).
fn watch_peer(webrtc: &gst::Element, live: &Arc<Liveness>, began: Instant) {
    let l = live.clone();
    webrtc.connect_notify(Some("connection-state"), move |w, _| {
        use gst_webrtc::WebRTCPeerConnectionState as S;
        match w.property::<S>("connection-state") {
            S::Connected => {
                l.heard_ms.store(ms_since(began), Ordering::Relaxed);
                l.connected.store(true, Ordering::Relaxed);
            }
            S::Failed | S::Closed => l.ended.store(true, Ordering::Relaxed),
            _ => {}
        }
    });
    let rtpbin = webrtc
        .downcast_ref::<gst::Bin>()
        .and_then(|b| b.by_name("rtpbin"));
    if let Some(rtpbin) = rtpbin {
        let l = live.clone();
        rtpbin.connect("on-ssrc-active", false, move |_| {
            l.heard_ms.store(ms_since(began), Ordering::Relaxed);
            None
        });
    } else {
        tracing::warn!("webrtcbin has no rtpbin: listeners are ended only by DELETE or failure");
    }
}

fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Offer in, answer out, on webrtcbin's own threads; `reply` gets the answer
/// with every candidate once ICE gathering is complete.
fn negotiate(
    webrtc: &gst::Element,
    offer: Offer,
    id: String,
    live: Arc<Liveness>,
    reply: Reply,
    cmd_tx: Sender<Command>,
) {
    let fail = {
        let (reply, id, cmd_tx) = (reply.clone(), id.clone(), cmd_tx.clone());
        move |refusal: Refusal| {
            if let Some(r) = take(&reply) {
                let _ = r.send(Err(refusal));
            }
            let _ = cmd_tx.try_send(Command::WhepEnd {
                id: id.clone(),
                reply: None,
            });
        }
    };
    // Gathering ends after the local description is set: the answer then
    // carries every candidate.
    {
        let (reply, id, live) = (reply.clone(), id.clone(), live.clone());
        webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
            if w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
                != gst_webrtc::WebRTCICEGatheringState::Complete
            {
                return;
            }
            send_answer(w, &reply, &id, &live, true);
        });
    }
    let desc =
        gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer.sdp);
    let weak = webrtc.downgrade();
    let promise = gst::Promise::with_change_func(move |got| {
        if let Some(why) = promise_error(&got) {
            fail(Refusal::Offer(why));
            return;
        }
        let Some(webrtc) = weak.upgrade() else { return };
        let weak = webrtc.downgrade();
        let fail = fail.clone();
        let answered = gst::Promise::with_change_func(move |got| {
            if let Some(why) = promise_error(&got) {
                fail(Refusal::Offer(why));
                return;
            }
            let answer = got
                .ok()
                .flatten()
                .and_then(|s| s.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok());
            let (Some(answer), Some(webrtc)) = (answer, weak.upgrade()) else {
                fail(Refusal::Offer("webrtcbin made no answer to it".into()));
                return;
            };
            webrtc.emit_by_name::<()>("set-local-description", &[&answer, &None::<gst::Promise>]);
        });
        webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &answered]);
    });
    webrtc.emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
}

fn take(reply: &Reply) -> Option<oneshot::Sender<Result<Answer, Refusal>>> {
    reply.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Answers with the local description, unless answered already: once ICE
/// gathering is `complete`, or before (`complete` false) after
/// [`GATHER_WAIT`]. An answer without a candidate is no use to a browser:
/// refused (the session then ends, unanswered, at the next tick).
fn send_answer(w: &gst::Element, reply: &Reply, id: &str, live: &Liveness, complete: bool) {
    let local = w
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .and_then(|d| d.sdp().as_text().ok());
    if local.is_none() && !complete {
        // Still negotiating: the tick ends it if this goes on.
        return;
    }
    let Some(r) = take(reply) else { return };
    let _ = r.send(match local {
        Some(sdp) if sdp.contains("a=candidate:") => {
            live.answered.store(true, Ordering::Relaxed);
            Ok(Answer {
                id: id.to_string(),
                sdp,
            })
        }
        Some(_) => Err(Refusal::NoAddress),
        None => Err(Refusal::Failed("no local description".into())),
    });
}

/// The error a webrtcbin promise was answered with, if any.
fn promise_error(got: &Result<Option<&gst::StructureRef>, gst::PromiseError>) -> Option<String> {
    match got {
        Err(e) => Some(format!("{e:?}")),
        Ok(Some(s)) if s.has_field("error") => Some(
            s.get::<glib::Error>("error")
                .map_or_else(|_| "refused".to_string(), |e| e.message().to_string()),
        ),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const CHROME_OFFER: &str = include_str!("../../tests/fixtures/whep/chrome-offer.sdp");

    #[test]
    fn a_browser_offer_is_taken_and_broken_ones_are_refused() {
        gst::init().unwrap();
        let offer = Offer::parse(CHROME_OFFER).unwrap();
        assert_eq!(offer.pt, 111);
        let cases: &[(&str, &str, &str)] = &[
            ("v=0", "x=0", "begin with v=0"),
            ("m=audio 9", "m=video 9", "no audio m-line"),
            ("UDP/TLS/RTP/SAVPF", "RTP/AVP", "not DTLS-SRTP"),
            ("a=ice-ufrag:", "a=ice-ufragx:", "has no a=ice-ufrag"),
            ("a=fingerprint:", "a=fingerprintx:", "has no a=fingerprint"),
            ("a=recvonly", "a=sendonly", "does not ask to receive"),
            ("opus/48000/2", "speex/48000", "does not include Opus"),
        ];
        for (from, to, expect) in cases {
            assert!(CHROME_OFFER.contains(from), "{from}");
            let broken = CHROME_OFFER.replace(from, to);
            let err = Offer::parse(&broken).unwrap_err();
            assert!(err.contains(expect), "{from} -> {to}: {err}");
        }
        assert!(Offer::parse("").is_err());
        // mDNS candidates are left out, others kept.
        let host = "a=candidate:1 1 udp 2113937151 192.0.2.7 40231 typ host generation 0\r\n";
        let with_host = CHROME_OFFER.replace("a=ice-ufrag:", &format!("{host}a=ice-ufrag:"));
        let text = Offer::parse(&with_host).unwrap().sdp.as_text().unwrap();
        assert!(!text.contains(".local"), "{text}");
        assert!(text.contains("192.0.2.7 40231"), "{text}");
        assert!(CHROME_OFFER.contains(".local "));
        assert!(Offer::parse("v=0\r\n").is_err());
    }

    #[test]
    fn each_codec_has_a_session_pipeline() {
        gst::init().unwrap();
        for codec in [Codec::Opus, Codec::L16, Codec::Aac, Codec::Mp3] {
            let d = description(codec, 111);
            gst::parse::launch(&d).unwrap_or_else(|e| panic!("{codec:?}: {d}: {e}"));
            assert_eq!(d.contains("opusenc"), codec != Codec::Opus, "{d}");
        }
    }
}

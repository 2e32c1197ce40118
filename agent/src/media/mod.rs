//! The media side: GStreamer capture pipelines and the RTSP server, all driven from
//! one named thread ("hark-gst") that runs a glib main loop on its own context.
//!
//! Owns: GStreamer objects (pipelines, the RTSP server, mounts). Must not touch:
//! stream health decisions; it reports what happens ([`MediaEvent`]) and does what
//! the supervisor asks ([`MediaHandle`]). Pipelines are stopped on short-lived
//! "hark-reap" threads, because stopping a capture device can block (a driver or a
//! FIFO that stopped delivering); the main loop never waits on a device.

mod fanout;
mod group;
pub mod mixer;
pub mod pipeline;
mod recorder;
pub mod reports;
pub mod sched;
mod server;
mod warm;
pub mod whep;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use tokio::sync::mpsc::{Receiver, Sender, channel};
use tokio::sync::oneshot;

use crate::config::{Encoding, GroupSpec, RtspConfig, Source, StreamSpec};
use fanout::Fanout;
pub use reports::{Inbox, Reports};
pub use server::{ServerError, path_of_request_url};

/// What the media side reports to the supervisor. Every pipeline event carries the
/// generation of the pipeline it came from, so events of a replaced pipeline can be
/// recognised as stale.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A level reading (dBFS of the loudest channel): audio is flowing.
    Level {
        stream: String,
        generation: u64,
        peak_dbfs: f64,
        rms_dbfs: f64,
        /// Encoded bytes handed to clients so far (all pipelines of the stream).
        bytes_sent: u64,
        /// Groups: members, channel map, levels per channel.
        group: Option<Box<crate::state::GroupStatus>>,
    },
    /// The pipeline failed or could not start.
    Failed {
        stream: String,
        generation: u64,
        reason: String,
    },
    /// The number of client media attached to a stream changed.
    Clients { stream: String, count: usize },
    /// A stream's recorder changed (`None`: it stopped recording).
    Recorder {
        stream: String,
        status: Option<Box<crate::state::RecorderStatus>>,
    },
    /// The recording directory after a retention pass.
    RecordingDisk(Box<crate::state::DiskStatus>),
}

enum Command {
    Mount(StreamSpec),
    Start {
        spec: StreamSpec,
        generation: u64,
        device: bool,
        tap: bool,
    },
    Stop {
        stream: String,
        generation: u64,
    },
    Unmount {
        stream: String,
    },
    /// The streams configured at start are mounted (see `Server::settle`).
    Settled,
    /// Record a mounted stream, or stop recording it.
    Record {
        stream: String,
        on: bool,
    },
    Reaped {
        stream: String,
        generation: u64,
    },
    Shutdown {
        deadline: Duration,
        done: oneshot::Sender<()>,
    },
    /// The watchdog's probe: answered when the main context runs this command.
    Ping(oneshot::Sender<()>),
    /// Test hook: block the GStreamer main-context thread for good.
    Wedge,
    /// Time to look after the recorders (`recorder::TICK`).
    RecordTick,
    /// A browser's WHEP offer for a stream.
    Whep {
        stream: String,
        offer: whep::Offer,
        reply: oneshot::Sender<Result<whep::Answer, whep::Refusal>>,
    },
    /// End a WHEP session (`reply`: whether there was one of that stream).
    WhepEnd {
        id: String,
        reply: Option<(String, oneshot::Sender<bool>)>,
    },
    /// Time to look for WHEP listeners gone (`whep::TICK`).
    WhepTick,
    /// A recording segment's pipeline ended (`error` None) or failed.
    RecorderBus {
        id: usize,
        error: Option<String>,
        /// The error is a full disk.
        no_space: bool,
    },
}

/// Errors starting the media side.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot initialise GStreamer: {0}")]
    Init(#[from] glib::Error),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot start the media thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the media thread ended during start-up")]
    ThreadDied,
}

/// Commands queued for the media thread before further ones are dropped.
pub const COMMAND_QUEUE: usize = 1024;

/// A cloneable handle to the media thread. Commands are queued; none blocks.
#[derive(Clone)]
pub struct MediaHandle {
    tx: Sender<Command>,
    /// The RTSP port actually bound.
    pub port: u16,
}

impl MediaHandle {
    fn send(&self, cmd: Command) {
        // A closed channel means the media thread is gone; the supervisor sees that
        // through `closed()` and ends the daemon, so the command can be dropped.
        // A full one means the thread stopped draining commands: the command is
        // dropped and so is the watchdog's probe, so systemd restarts the agent.
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = self.tx.try_send(cmd) {
            tracing::error!(
                queue = COMMAND_QUEUE,
                "the media thread does not take commands; dropping one"
            );
        }
    }

    /// Adds the RTSP mount for a stream (clients get 503 until audio flows).
    pub fn mount(&self, spec: StreamSpec) {
        self.send(Command::Mount(spec));
    }

    /// Starts the capture pipeline `generation` for a mounted stream (`device`:
    /// it follows a discovered device). If the previous pipeline is still being
    /// stopped, it starts once that is done.
    /// `tap`: it is a member of a configured group (its pipeline gets a tee
    /// for the group's branch).
    pub fn start(&self, spec: StreamSpec, generation: u64, device: bool, tap: bool) {
        self.send(Command::Start {
            spec,
            generation,
            device,
            tap,
        });
    }

    pub fn stop(&self, stream: &str, generation: u64) {
        self.send(Command::Stop {
            stream: stream.to_string(),
            generation,
        });
    }

    /// Stops the stream's pipeline, ends its clients, and removes its mount.
    pub fn unmount(&self, stream: &str) {
        self.send(Command::Unmount {
            stream: stream.to_string(),
        });
    }

    /// Starts or stops recording a mounted stream, leaving its capture and
    /// clients alone.
    pub fn record(&self, stream: &str, on: bool) {
        self.send(Command::Record {
            stream: stream.to_string(),
            on,
        });
    }

    /// Every stream the agent starts with has been mounted (its Mount commands
    /// were sent before this): unknown paths get 404 from now on, 503 before.
    pub fn settled(&self) {
        self.send(Command::Settled);
    }

    /// Ends every client and pipeline, waiting at most `deadline` for devices to
    /// close, then stops the media thread.
    pub async fn shutdown(&self, deadline: Duration) {
        let (done, wait) = oneshot::channel();
        self.send(Command::Shutdown { deadline, done });
        let _ = tokio::time::timeout(deadline + Duration::from_millis(300), wait).await;
    }

    /// Asks the media thread to answer; the answer comes once its main context
    /// has run the request, so a blocked main context never answers.
    pub fn ping(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Ping(tx));
        rx
    }

    /// Test hook (`--test-hooks`, SIGUSR1): blocks the main-context thread, as
    /// a deadlocked GStreamer call would.
    pub fn wedge(&self) {
        self.send(Command::Wedge);
    }

    /// Makes a WHEP session for `stream`: harkd's answer to `offer`, once
    /// it carries every ICE candidate.
    pub async fn whep(
        &self,
        stream: &str,
        offer: whep::Offer,
    ) -> Result<whep::Answer, whep::Refusal> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Whep {
            stream: stream.to_string(),
            offer,
            reply,
        });
        match tokio::time::timeout(whep::ANSWER_WAIT, answer).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => Err(whep::Refusal::Failed(
                "the media thread did not answer".into(),
            )),
            Err(_) => Err(whep::Refusal::Failed("no answer in time".into())),
        }
    }

    /// Ends WHEP session `id` of `stream`; false if there was none.
    pub async fn whep_end(&self, stream: &str, id: &str) -> bool {
        let (reply, done) = oneshot::channel();
        self.send(Command::WhepEnd {
            id: id.to_string(),
            reply: Some((stream.to_string(), reply)),
        });
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .is_ok_and(|r| r.unwrap_or(false))
    }

    /// Resolves when the media thread has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// Starts the media thread with its RTSP server, after warming up what the
/// `encodings` configured (devices' and streams') need (see `warm.rs`).
pub fn spawn(
    rtsp: &RtspConfig,
    http: &crate::config::HttpConfig,
    recording: &crate::config::RecordingConfig,
    level_interval: Duration,
    encodings: &[Encoding],
    events: Reports,
) -> Result<(MediaHandle, std::thread::JoinHandle<()>), MediaError> {
    gst::init()?;
    let (took, chains) = warm::warm_up(encodings);
    tracing::debug!(
        took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        chains,
        "media warmed up"
    );
    let (tx, rx) = channel(COMMAND_QUEUE);
    type Ready = Result<(u16, gstreamer_rtsp_server::RTSPServer), ServerError>;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
    let rtsp_cfg = rtsp.clone();
    let warm_encoding = warm::session_encoding(encodings);
    let rtsp = rtsp.clone();
    let recording = recording.clone();
    let (max_listeners, stun) = (http.max_listeners, http.stun_server.clone());
    let cmd_tx = tx.clone();
    let thread = std::thread::Builder::new()
        .name("hark-gst".into())
        .spawn(move || {
            let ctx = glib::MainContext::new();
            let pushed = ctx.with_thread_default(|| {
                let main_loop = glib::MainLoop::new(Some(&ctx), false);
                let server = match server::Server::start(&rtsp, &ctx) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                server.mount_warm_up(&warm_encoding);
                let _ = ready_tx.send(Ok((server.port, server.server.clone())));
                let recorders = recorder::Recorders::new(recording, events.clone(), cmd_tx.clone());
                let listeners =
                    whep::Listeners::new(max_listeners, stun, events.clone(), cmd_tx.clone());
                let state = State {
                    listeners,
                    recorders,
                    server,
                    streams: HashMap::new(),
                    groups: HashMap::new(),
                    taps: HashMap::new(),
                    reaping: HashMap::new(),
                    events,
                    cmd_tx,
                    level_interval_ns: u64::try_from(level_interval.as_nanos()).unwrap_or(u64::MAX),
                };
                let ml = main_loop.clone();
                ctx.spawn_local(async move {
                    command_loop(state, rx).await;
                    ml.quit();
                });
                main_loop.run();
            });
            if pushed.is_err() {
                tracing::error!("cannot make the media context the thread default");
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok((port, server))) => {
            warm::warm_up_session(&rtsp_cfg, port, &server);
            Ok((MediaHandle { tx, port }, thread))
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(MediaError::ThreadDied),
    }
}

struct Running {
    generation: u64,
    pipeline: gst::Pipeline,
    _watch: gst::bus::BusWatchGuard,
}

struct Mounted {
    spec: StreamSpec,
    fanout: Arc<Fanout>,
    running: Option<Running>,
    /// A start that waits until no pipeline of this stream is being stopped.
    pending: Option<(StreamSpec, u64, bool, bool)>,
    /// It follows a discovered device.
    device: bool,
    /// Its pipeline has a tee for groups.
    tap: bool,
}

struct State {
    server: server::Server,
    listeners: whep::Listeners,
    recorders: recorder::Recorders,
    streams: HashMap<String, Mounted>,
    /// Groups by name, from their first start to their unmount.
    groups: HashMap<String, group::GroupRun>,
    /// Member branches into groups, by (member, group), while both run.
    taps: HashMap<(String, String), group::Tap>,
    /// Pipelines still being stopped on reaper threads, by stream name. Kept apart
    /// from `streams` so that a stream removed and added again (a mic unplugged and
    /// plugged back) still waits for its old pipeline to let go of the device.
    reaping: HashMap<String, usize>,
    events: Reports,
    cmd_tx: Sender<Command>,
    level_interval_ns: u64,
}

async fn command_loop(mut state: State, mut rx: Receiver<Command>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Mount(spec) => state.mount(spec),
            Command::Start {
                spec,
                generation,
                device,
                tap,
            } => state.start(spec, generation, device, tap),
            Command::Stop { stream, generation } => state.stop(&stream, Some(generation)),
            Command::Unmount { stream } => state.unmount(&stream),
            Command::Settled => state.server.settle(),
            Command::Record { stream, on } => {
                if let Some(m) = state.streams.get_mut(&stream) {
                    m.spec.record = on;
                    state.sync_recorder(&stream);
                }
            }
            Command::Reaped { stream, generation } => state.reaped(&stream, generation),
            Command::Shutdown { deadline, done } => {
                state.shutdown(deadline);
                let _ = done.send(());
                return;
            }
            Command::Ping(reply) => {
                let _ = reply.send(());
            }
            Command::RecordTick => state.recorders.tick(),
            Command::Whep {
                stream,
                offer,
                reply,
            } => match state.streams.get(&stream) {
                Some(m) => {
                    let codec = m.spec.encoding.codec;
                    let fanout = m.fanout.clone();
                    state.listeners.open(&stream, &fanout, codec, offer, reply);
                }
                None => {
                    let _ = reply.send(Err(whep::Refusal::NoStream(stream)));
                }
            },
            Command::WhepEnd { id, reply } => match reply {
                Some((stream, reply)) => {
                    let _ = reply.send(state.listeners.end(&id, Some(&stream)));
                }
                None => {
                    state.listeners.end(&id, None);
                }
            },
            Command::WhepTick => state.listeners.tick(),
            Command::RecorderBus {
                id,
                error,
                no_space,
            } => state.recorders.on_bus(id, error, no_space),
            Command::Wedge => {
                tracing::warn!("test hook: the GStreamer thread stops answering");
                loop {
                    std::thread::park();
                }
            }
        }
    }
}

impl State {
    fn mount(&mut self, spec: StreamSpec) {
        if self.streams.contains_key(&spec.name) {
            tracing::warn!(stream = %spec.name, "already mounted");
            return;
        }
        let fanout = Arc::new(Fanout::default());
        self.server.mount(
            &spec.name,
            spec.encoding.codec,
            fanout.clone(),
            &self.events,
        );
        tracing::info!(stream = %spec.name, path = %server::mount_path(&spec.name), "mounted");
        let name = spec.name.clone();
        self.streams.insert(
            spec.name.clone(),
            Mounted {
                spec,
                fanout,
                running: None,
                pending: None,
                device: false,
                tap: false,
            },
        );
        self.sync_recorder(&name);
    }

    /// Records the stream or not, as its spec says.
    fn sync_recorder(&mut self, name: &str) {
        let Some(m) = self.streams.get(name) else {
            return;
        };
        let (codec, fanout) = (m.spec.encoding.codec, m.fanout.clone());
        match (m.spec.record, self.recorders.recording(name)) {
            (true, Some(c)) if c == codec => {}
            (true, Some(_)) => {
                self.recorders.remove(name);
                self.recorders.add(name, codec, fanout);
            }
            (true, None) => self.recorders.add(name, codec, fanout),
            (false, Some(_)) => self.recorders.remove(name),
            (false, None) => {}
        }
    }

    fn start(&mut self, spec: StreamSpec, generation: u64, device: bool, tap: bool) {
        let Some(m) = self.streams.get_mut(&spec.name) else {
            tracing::warn!(stream = %spec.name, "start for a stream that is not mounted");
            return;
        };
        if m.running.is_some() {
            // The supervisor stops before it starts; a second start is a bug there.
            tracing::warn!(stream = %spec.name, generation, "start while running; restarting");
            self.stop(&spec.name, None);
        }
        let Some(m) = self.streams.get_mut(&spec.name) else {
            return;
        };
        if self.reaping.get(&spec.name).is_some_and(|n| *n > 0) {
            tracing::info!(stream = %spec.name, generation, "waiting for the previous pipeline to stop");
            m.pending = Some((spec, generation, device, tap));
            return;
        }
        m.spec = spec.clone();
        m.device = device;
        m.tap = tap;
        let name = spec.name.clone();
        self.sync_recorder(&name);
        let mixer = match &spec.source {
            Source::Group(g) => Some(self.group_mixer(&name, g)),
            _ => None,
        };
        let Some(m) = self.streams.get_mut(&name) else {
            return;
        };
        match launch(
            &m.spec,
            generation,
            m.fanout.clone(),
            mixer,
            tap,
            &self.events,
            self.level_interval_ns,
        ) {
            Ok(r) => {
                m.running = Some(r);
                if !matches!(spec.source, Source::Group(_)) {
                    self.tap_member(&name);
                }
            }
            Err(reason) => {
                self.events.send(MediaEvent::Failed {
                    stream: name,
                    generation,
                    reason,
                });
            }
        }
    }

    /// The mixer of group `name`, made (or made again, when its members or
    /// mode changed) with a tap into every running member.
    fn group_mixer(&mut self, name: &str, spec: &GroupSpec) -> group::SharedMixer {
        if let Some(run) = self.groups.get(name)
            && run.spec == *spec
        {
            return run.mixer.clone();
        }
        self.untap_group(name);
        let run = group::GroupRun::new(spec);
        let mixer = run.mixer.clone();
        self.groups.insert(name.to_string(), run);
        let members: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, m)| m.running.is_some() && !matches!(m.spec.source, Source::Group(_)))
            .map(|(n, _)| n.clone())
            .collect();
        for member in members {
            self.tap_member_into(&member, name);
        }
        mixer
    }

    /// Taps a member's running pipeline into every group it belongs to.
    fn tap_member(&mut self, member: &str) {
        let groups: Vec<String> = self.groups.keys().cloned().collect();
        for g in groups {
            self.tap_member_into(member, &g);
        }
    }

    fn tap_member_into(&mut self, member: &str, group_name: &str) {
        let key = (member.to_string(), group_name.to_string());
        if self.taps.contains_key(&key) {
            return;
        }
        let (Some(m), Some(run)) = (self.streams.get(member), self.groups.get(group_name)) else {
            return;
        };
        let (Some(running), Some(input)) = (&m.running, run.input_for(member, m.device)) else {
            return;
        };
        if !m.tap {
            // It became a member by a reload: its pipeline has no tee yet, so it
            // starts once more with one (its generation unchanged); the tap is
            // added when it runs.
            tracing::info!(
                stream = member,
                group = group_name,
                "restarting capture with a tap for its group"
            );
            let (spec, generation, device) = (m.spec.clone(), running.generation, m.device);
            self.stop(member, None);
            self.start(spec, generation, device, true);
            return;
        }
        match group::add_tap(&running.pipeline, group_name, input) {
            Ok(tap) => {
                tracing::info!(
                    stream = member,
                    group = group_name,
                    "member joined its group"
                );
                self.taps.insert(key, tap);
            }
            Err(e) => {
                tracing::warn!(stream = member, group = group_name, error = %e, "cannot feed the group");
            }
        }
    }

    /// A member's pipeline stopped: its taps go with it; its inputs go quiet.
    fn untap_member(&mut self, member: &str) {
        for tap in self.take_taps(|(m, _)| m == member) {
            mixer::lock(&tap.input).reset();
        }
    }

    /// Unlinks every tap into group `name` from its running member.
    fn untap_group(&mut self, name: &str) {
        for tap in self.take_taps(|(_, g)| g == name) {
            group::remove_tap(tap);
        }
    }

    /// Removes the taps whose (member, group) `pick` selects.
    fn take_taps(&mut self, pick: impl Fn(&(String, String)) -> bool) -> Vec<group::Tap> {
        let keys: Vec<_> = self.taps.keys().filter(|k| pick(k)).cloned().collect();
        keys.iter().filter_map(|k| self.taps.remove(k)).collect()
    }

    /// Stops the stream's pipeline (if `generation` matches, or any when `None`).
    fn stop(&mut self, stream: &str, generation: Option<u64>) {
        let Some(m) = self.streams.get_mut(stream) else {
            return;
        };
        if let Some((_, g, _, _)) = &m.pending
            && generation.is_none_or(|want| want == *g)
        {
            m.pending = None;
        }
        let matches = m
            .running
            .as_ref()
            .is_some_and(|r| generation.is_none_or(|g| g == r.generation));
        if !matches {
            return;
        }
        let Some(run) = m.running.take() else {
            return;
        };
        m.fanout.set_down();
        self.untap_member(stream);
        *self.reaping.entry(stream.to_string()).or_default() += 1;
        reap(stream.to_string(), run, self.cmd_tx.clone());
    }

    fn reaped(&mut self, stream: &str, generation: u64) {
        tracing::debug!(stream, generation, "pipeline stopped");
        if let Some(n) = self.reaping.get_mut(stream) {
            *n = n.saturating_sub(1);
            if *n > 0 {
                return;
            }
            self.reaping.remove(stream);
        }
        if let Some((spec, g, device, tap)) =
            self.streams.get_mut(stream).and_then(|m| m.pending.take())
        {
            self.start(spec, g, device, tap);
        }
    }

    fn unmount(&mut self, stream: &str) {
        self.stop(stream, None);
        self.listeners.end_stream(stream);
        self.recorders.remove(stream);
        let Some(m) = self.streams.remove(stream) else {
            return;
        };
        if self.groups.contains_key(stream) {
            self.untap_group(stream);
            self.groups.remove(stream);
        }
        for run in self.groups.values() {
            // A device gone from an "all" mix leaves it; listed members stay.
            group::lock(&run.mixer).remove(stream);
        }
        // EOS first, so RTP clients get a BYE; then close their connections so
        // clients waiting on the control connection or TCP end at once too.
        m.fanout.end_all();
        self.server.unmount(stream);
        let closed = self.server.close_clients(Some(stream));
        tracing::info!(stream, clients_closed = closed, "unmounted");
    }

    fn shutdown(&mut self, deadline: Duration) {
        let started = Instant::now();
        // Segments first: each is written out (its end-of-stream) before its
        // stream's clients are ended.
        self.recorders.shutdown(deadline / 2);
        self.listeners.end_all();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut waiting = 0;
        for (name, m) in &mut self.streams {
            m.fanout.end_all();
            if let Some(run) = m.running.take() {
                waiting += 1;
                let tx = tx.clone();
                let name = name.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("hark-reap".into())
                        .spawn(move || {
                            let _ = run.pipeline.set_state(gst::State::Null);
                            let _ = tx.send(name);
                        });
                if spawned.is_err() {
                    waiting -= 1;
                }
            }
        }
        let closed = self.server.close_clients(None);
        while waiting > 0 {
            let left = deadline.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok(_) => waiting -= 1,
                Err(_) => {
                    tracing::warn!(
                        pipelines = waiting,
                        "pipelines did not stop in time; leaving them"
                    );
                    break;
                }
            }
        }
        tracing::info!(
            clients_closed = closed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "media stopped"
        );
    }
}

/// Builds and starts a capture pipeline, wiring its bus and appsink.
fn launch(
    spec: &StreamSpec,
    generation: u64,
    fanout: Arc<Fanout>,
    mixer: Option<group::SharedMixer>,
    tap: bool,
    events: &Reports,
    level_interval_ns: u64,
) -> Result<Running, String> {
    let capture = pipeline::build(spec, level_interval_ns, tap).map_err(|e| e.to_string())?;
    if let Some(mixer) = &mixer {
        group::render_into(&capture.pipeline, mixer.clone())?;
    }
    let sink_fanout = fanout.clone();
    capture.sink.set_callbacks(
        gstreamer_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let base = sink.base_time().unwrap_or(gst::ClockTime::ZERO);
                sink_fanout.push(&sample, base);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let bus = capture
        .pipeline
        .bus()
        .ok_or_else(|| "pipeline has no bus".to_string())?;
    let stream = spec.name.clone();
    let events = events.clone();
    let watch = bus
        .add_watch({
            let mut warnings = WarningLimiter::default();
            move |_bus, msg| {
                on_bus_message(
                    &stream,
                    generation,
                    msg,
                    &events,
                    &mut warnings,
                    &fanout,
                    mixer.as_ref(),
                );
                glib::ControlFlow::Continue
            }
        })
        .map_err(|e| format!("cannot watch the pipeline bus: {e}"))?;
    if let Err(e) = capture.pipeline.set_state(gst::State::Playing) {
        // The element's own error (e.g. "Could not open audio device") is on the
        // bus, not yet dispatched; it says more than the state-change failure.
        let reason = bus
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(err) => Some(describe_error(err)),
                _ => None,
            })
            .unwrap_or_else(|| format!("pipeline refused to start: {e}"));
        let _ = capture.pipeline.set_state(gst::State::Null);
        return Err(reason);
    }
    tracing::info!(stream = %spec.name, generation, codec = spec.encoding.codec.as_str(), "capture started");
    Ok(Running {
        generation,
        pipeline: capture.pipeline,
        _watch: watch,
    })
}

/// Lets one pipeline warning through per interval and counts the rest, so that an
/// overloaded board ("Can't record audio fast enough" 50 times a second) does not
/// fill the journal over the months it runs unattended.
#[derive(Default)]
struct WarningLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

const WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl WarningLimiter {
    /// Whether to log now, and how many were suppressed since the last one logged.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < WARNING_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

fn on_bus_message(
    stream: &str,
    generation: u64,
    msg: &gst::Message,
    events: &Reports,
    warnings: &mut WarningLimiter,
    fanout: &Fanout,
    mixer: Option<&group::SharedMixer>,
) {
    use gst::MessageView;
    match msg.view() {
        MessageView::Element(e) => {
            let Some(s) = e.structure() else { return };
            if s.name() != "level" {
                return;
            }
            if let (Some(peak), Some(rms)) = (loudest(s, "peak"), loudest(s, "rms")) {
                events.send(MediaEvent::Level {
                    stream: stream.to_string(),
                    generation,
                    peak_dbfs: peak,
                    rms_dbfs: rms,
                    bytes_sent: fanout.bytes_sent(),
                    group: mixer.map(|m| Box::new(group::lock(m).status())),
                });
            }
        }
        MessageView::Error(e) => {
            tracing::debug!(stream, generation, debug = ?e.debug(), "pipeline error details");
            events.send(MediaEvent::Failed {
                stream: stream.to_string(),
                generation,
                reason: describe_error(e),
            });
        }
        MessageView::Eos(_) => {
            events.send(MediaEvent::Failed {
                stream: stream.to_string(),
                generation,
                reason: "the source ended".into(),
            });
        }
        MessageView::Warning(w) => {
            if let Some(suppressed) = warnings.admit(Instant::now()) {
                tracing::warn!(stream, generation, warning = %w.error(), suppressed, "pipeline warning");
            }
        }
        _ => {}
    }
}

/// "element: message", e.g. "src: Could not open audio device for recording."
fn describe_error(e: &gst::message::Error) -> String {
    let src = e
        .src()
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| "pipeline".into());
    format!("{src}: {}", e.error())
}

/// The loudest channel of a level message field, in dBFS, floored at -200 (digital
/// silence is reported as -inf or huge negatives).
fn loudest(s: &gst::StructureRef, field: &str) -> Option<f64> {
    let values = s.get::<glib::ValueArray>(field).ok()?;
    values
        .iter()
        .filter_map(|v| v.get::<f64>().ok())
        .map(|db| if db.is_nan() { -200.0 } else { db.max(-200.0) })
        .reduce(f64::max)
}

/// Stops a pipeline on its own thread and reports back when it is done.
fn reap(stream: String, run: Running, cmd_tx: Sender<Command>) {
    let generation = run.generation;
    let spawned = std::thread::Builder::new()
        .name("hark-reap".into())
        .spawn({
            let stream = stream.clone();
            let cmd_tx = cmd_tx.clone();
            move || {
                let started = Instant::now();
                drop(run._watch);
                let _ = run.pipeline.set_state(gst::State::Null);
                let took = started.elapsed();
                if took > Duration::from_secs(1) {
                    tracing::warn!(stream = %stream, generation, took_ms = took.as_millis() as u64, "pipeline was slow to stop");
                }
                // A reaper is its own thread: it may wait for room.
                let _ = cmd_tx.blocking_send(Command::Reaped { stream, generation });
            }
        });
    if let Err(e) = spawned {
        tracing::error!(stream = %stream, error = %e, "cannot start a reaper thread; the pipeline is leaked");
        let _ = cmd_tx.try_send(Command::Reaped { stream, generation });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited_and_counted() {
        let mut l = WarningLimiter::default();
        let t0 = Instant::now();
        assert_eq!(l.admit(t0), Some(0));
        for i in 1..50 {
            assert_eq!(l.admit(t0 + Duration::from_millis(i * 20)), None);
        }
        assert_eq!(l.admit(t0 + WARNING_INTERVAL), Some(49));
        assert_eq!(l.admit(t0 + WARNING_INTERVAL * 2), Some(0));
    }
}

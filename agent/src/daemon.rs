//! Start-up: builds every subsystem in order, one commented step each, runs the
//! supervisor until a signal or a fatal error, then shuts down within a bound.
//!
//! Every task and thread started here is owned: tasks live in one `JoinSet`
//! (any that ends while the agent runs ends the agent with its name, so systemd
//! restarts it), and the media and device-watcher threads are joined at
//! shutdown, each within a bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch as watch_channel};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::devices::{ledger, watch};
use crate::media::{self, MediaError};
use crate::supervisor::{EVENT_QUEUE, Event, Supervisor, SupervisorError, store};

/// How long shutdown may wait for capture devices to close.
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(1500);
/// How long shutdown waits for each thread to end once told to.
const JOIN_DEADLINE: Duration = Duration::from_millis(1000);
/// Device events queued before the watcher waits for room.
const DEVICE_QUEUE: usize = 64;
/// How long READY=1 waits for the first D-Bus attempt, so that with a working
/// bus the name is taken before READY (as units ordered after harkd expect),
/// while a missing or hung bus never holds the streams' readiness back.
const FIRST_BUS_WAIT: Duration = Duration::from_secs(2);
/// Alerts are looked for on every snapshot, and at least this often (for
/// reminders while nothing changes).
const ALERT_TICK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the device watcher: {0}")]
    Devices(std::io::Error),
    #[error("cannot start the name ledger's writer: {0}")]
    Store(std::io::Error),
    #[error("cannot listen for HTTP on {0}: {1}")]
    Http(std::net::SocketAddr, std::io::Error),
    #[error("the HTTP endpoint ended: {0}")]
    HttpEnded(String),
    #[error("the device watcher ended")]
    WatcherEnded,
    /// A task that must run as long as the agent does ended.
    #[error("the {0} task ended unexpectedly")]
    TaskEnded(&'static str),
    /// Not a fault of the agent's own: it has had no running stream for too
    /// long and the deadman would allow a reboot (see `deadman::monitor`).
    #[error("the agent cannot work ({0}); exiting for the deadman")]
    Deadman(String),
}

/// Options that only tests and the hardware tests use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hooks {
    /// SIGUSR1 wedges the GStreamer thread, SIGUSR2 the supervisor loop.
    pub wedge_signals: bool,
}

/// The encodings to warm up before READY: every configured stream's, and for
/// devices the defaults' and each rule's, with one and two channels (what
/// mics most often have).
fn warm_encodings(config: &Config) -> Vec<crate::config::Encoding> {
    let mut out: Vec<_> = config.streams.iter().map(|s| s.encoding.clone()).collect();
    if config.devices.enabled {
        let settings = std::iter::once(&config.devices.defaults)
            .chain(config.devices.rules.iter().map(|r| &r.settings));
        for s in settings {
            for channels in [1, 2] {
                out.push(s.encoding(channels.min(s.max_channels())));
            }
        }
    }
    out
}

/// A task that runs as long as the agent: it never ends by itself.
async fn forever(name: &'static str, fut: impl std::future::Future<Output = ()>) -> DaemonError {
    fut.await;
    DaemonError::TaskEnded(name)
}

/// Waits for a thread to end, at most `limit`; says so when it does not.
async fn join_within(name: &str, thread: std::thread::JoinHandle<()>, limit: Duration) {
    let join = tokio::task::spawn_blocking(move || thread.join());
    match tokio::time::timeout(limit, join).await {
        Ok(Ok(Ok(()))) => {}
        Ok(_) => tracing::error!(thread = name, "thread panicked"),
        Err(_) => tracing::error!(
            thread = name,
            "thread did not end within {} ms",
            limit.as_millis()
        ),
    }
}

/// What the start-up steps share: the tasks they start, the supervisor's
/// queue, the snapshot the views read, and the media handle.
struct Parts {
    config: Arc<Config>,
    tasks: JoinSet<DaemonError>,
    events: mpsc::Sender<Event>,
    snapshot: watch_channel::Receiver<crate::state::Snapshot>,
    media: media::MediaHandle,
    url_base: String,
    /// True once READY is sent (the streams configured at start are mounted).
    ready: watch_channel::Sender<bool>,
    /// The webhooks: their senders run from the start; their tracker is
    /// handed to its task once the agent is ready.
    alerts: Option<crate::alerts::send::Alerts>,
    alert_stats: Vec<Arc<crate::alerts::send::Stats>>,
}

/// A watcher thread, for the run and for shutdown.
type WatcherParts = (Option<watch::Ended>, Option<std::thread::JoinHandle<()>>);

pub async fn run(
    config: Config,
    devices: watch::Source,
    bus: Option<crate::dbus::Bus>,
    hooks: Hooks,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    let config = Arc::new(config);

    // 1. Signals first, so a SIGTERM during start-up is not lost.
    let signals = Signals::install()?;

    // 2. The media thread: GStreamer, and the RTSP server bound to its port.
    let (reports, inbox) = media::reports::channel();
    let (media, media_thread) = media::spawn(
        &config.rtsp,
        &config.http,
        &config.recording,
        config.health.level_interval,
        &warm_encodings(&config),
        reports,
    )?;
    let url_base = url_base(&config, media.port);
    tracing::info!(url_base = %url_base, auth = config.rtsp.auth.is_some(), "RTSP server listening");

    // 3. The name ledger: which device got which name, across reboots (read on
    // a blocking thread; written by its own thread from now on).
    let ledger_path = config.devices.state_dir.join("names.json");
    let names = load_names(ledger_path.clone()).await;
    let writer = store::Writer::spawn(ledger_path).map_err(DaemonError::Store)?;

    // 4. The supervisor, which owns the streams and starts their pipelines.
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (probe_tx, probe_rx) = mpsc::channel(4);
    let (supervisor, snapshot) = Supervisor::new(
        config.clone(),
        media.clone(),
        inbox,
        names,
        devices.roots.sysfs.clone(),
        writer,
    );
    // 4b. The webhooks' senders (their own threads; nothing is sent yet).
    let alerts = crate::alerts::send::Alerts::start(&config.alerts);
    let mut p = Parts {
        config: config.clone(),
        tasks: JoinSet::new(),
        events: events_tx,
        snapshot,
        media: media.clone(),
        url_base,
        ready: watch_channel::channel(false).0,
        alert_stats: alerts.stats(),
        alerts: Some(alerts),
    };

    // 5. The HTTP endpoint (loopback unless configured otherwise), bound now so
    // a taken port is an error at start, not later.
    start_http(&mut p, started).await?;
    // 6. Devices: the watcher, the cards present now, then hotplug.
    let (watcher_ended, watcher_thread) = start_devices(&mut p, &devices).await?;
    // 7. D-Bus, never in the way of the streams.
    let bus_status = bus.map(|b| start_dbus(&mut p, b));
    // 8. Signals (and the test hooks) into the supervisor's one queue.
    signals.forward(&mut p, hooks)?;
    // 9. The deadman's eyes: good-boot marks, and "no stream has run for too long".
    start_deadman(&mut p, &devices);
    // 10. systemd: READY, STATUS=, the watchdog.
    start_systemd(&mut p, probe_tx, bus_status, started).await;
    // 11. Alerts: from READY on, every snapshot is read for what changed.
    start_alerts(&mut p);
    // The queue's last sender here goes; the tasks hold their own.
    let Parts {
        mut tasks, events, ..
    } = p;
    drop(events);

    // 12. Run until a shutdown request or a fatal error.
    let watcher_gone = async {
        match watcher_ended {
            Some(ended) => {
                let _ = ended.await;
            }
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        biased;
        // The normal path: a signal asked the supervisor to stop (or it failed).
        r = supervisor.run(events_rx, probe_rx) => r.map_err(DaemonError::from),
        // Without its device watcher the agent would miss every plug: restart.
        () = watcher_gone => Err(DaemonError::WatcherEnded),
        // Any other task ending ends the agent, with its reason.
        Some(ended) = tasks.join_next() => Err(match ended {
            Ok(e) => e,
            Err(e) => DaemonError::TaskEnded(if e.is_panic() { "a panicked" } else { "a cancelled" }),
        }),
    };

    // 13. Bounded shutdown.
    shut_down(&media, media_thread, tasks, watcher_thread).await;
    result
}

/// Ends clients, stops pipelines and the media thread, then every task and the
/// watcher thread (its events have nowhere to go), each within a bound.
async fn shut_down(
    media: &media::MediaHandle,
    media_thread: std::thread::JoinHandle<()>,
    mut tasks: JoinSet<DaemonError>,
    watcher_thread: Option<std::thread::JoinHandle<()>>,
) {
    crate::notify::stopping();
    let stopping = Instant::now();
    media.shutdown(SHUTDOWN_DEADLINE).await;
    join_within("hark-gst", media_thread, JOIN_DEADLINE).await;
    tasks.shutdown().await;
    if let Some(t) = watcher_thread {
        join_within("device watcher", t, JOIN_DEADLINE).await;
    }
    tracing::info!(took_ms = stopping.elapsed().as_millis() as u64, "stopped");
}

/// `rtsp://<host>:<port>/`, as clients should write it.
fn url_base(config: &Config, port: u16) -> String {
    let host = match config.rtsp.bind {
        ip if ip.is_unspecified() => "<host>".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("rtsp://{host}:{port}/")
}

/// The name ledger, read on a blocking thread (a problem is logged; naming
/// starts afresh, by the ledger's own policy).
async fn load_names(path: std::path::PathBuf) -> crate::devices::naming::Ledger {
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (names, problem) = tokio::task::spawn_blocking(move || ledger::load(&path, unix_now))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "name ledger not read");
            (Default::default(), None)
        });
    if let Some(p) = problem {
        tracing::error!(error = %p, "name ledger");
    }
    names
}

async fn start_http(p: &mut Parts, started: Instant) -> Result<(), DaemonError> {
    let listen = p.config.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DaemonError::Http(listen, e))?;
    tracing::info!(listen = %listen, "HTTP status endpoint listening");
    let mut ctx = crate::http::Context::new(p.snapshot.clone(), p.media.port)
        .with_auth(p.config.http.auth.as_ref());
    ctx.started = started;
    ctx.alerts = p.alert_stats.clone();
    ctx.media = Some(p.media.clone());
    ctx.recordings = Some(p.config.recording.directory.clone());
    p.tasks.spawn(async move {
        DaemonError::HttpEnded(match crate::http::serve(listener, ctx).await {
            Ok(()) => "stopped".into(),
            Err(e) => e.to_string(),
        })
    });
    Ok(())
}

/// The watcher first, then the cards present now (named together; read on a
/// blocking thread, since probing a card that is not USB opens it; the device
/// path then rehearsed on that thread, see [`watch::rehearse`]), then
/// hotplug. A card plugged in between is seen twice at worst (a
/// re-announcement of the same device changes nothing).
async fn start_devices(
    p: &mut Parts,
    devices: &watch::Source,
) -> Result<WatcherParts, DaemonError> {
    if !p.config.devices.enabled {
        return Ok((None, None));
    }
    let (dev_tx, mut dev_rx) = mpsc::channel(DEVICE_QUEUE);
    let w = match &devices.injected {
        Some(path) => watch::spawn_injected(path.clone(), devices.roots.clone(), dev_tx),
        None => watch::spawn_udev(devices.roots.clone(), dev_tx),
    }
    .map_err(DaemonError::Devices)?;
    let roots = devices.roots.clone();
    let cfg = p.config.devices.clone();
    let cards = tokio::task::spawn_blocking(move || {
        let cards = watch::coldplug(&roots);
        watch::rehearse(&roots, &cfg);
        cards
    })
    .await
    .unwrap_or_default();
    tracing::info!(cards = cards.len(), source = %devices.describe(), "devices watched");
    let _ = p.events.send(Event::Coldplug(cards)).await;
    let fwd = p.events.clone();
    p.tasks.spawn(forever("device event forwarder", async move {
        while let Some(ev) = dev_rx.recv().await {
            if fwd.send(Event::Device(ev)).await.is_err() {
                break;
            }
        }
    }));
    Ok((Some(w.ended), Some(w.thread)))
}

/// A supervising task connects (objects served, then the name taken) when it
/// can, retries with backoff when it cannot, and connects afresh when the bus
/// restarts. Its state reaches the snapshot through the supervisor, like the
/// deadman's.
fn start_dbus(
    p: &mut Parts,
    b: crate::dbus::Bus,
) -> watch_channel::Receiver<crate::state::BusStatus> {
    let (bus_tx, bus_rx) = watch_channel::channel(crate::state::BusStatus::connecting(b));
    let serve = crate::dbus::serve(
        b,
        p.snapshot.clone(),
        p.events.clone(),
        p.url_base.clone(),
        move |st| {
            let _ = bus_tx.send(st);
        },
    );
    p.tasks.spawn(forever("D-Bus", serve));
    let (tx, mut rx) = (p.events.clone(), bus_rx.clone());
    p.tasks.spawn(forever("D-Bus status", async move {
        loop {
            let st = rx.borrow_and_update().clone();
            if tx.send(Event::Bus(st)).await.is_err() || rx.changed().await.is_err() {
                break;
            }
        }
    }));
    bus_rx
}

/// The signals harkd answers, installed before anything else starts.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let on = |k| signal(k).map_err(DaemonError::Signals);
        Ok(Signals {
            term: on(SignalKind::terminate())?,
            int: on(SignalKind::interrupt())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// Turns signals into requests (and, with the test hooks, wedges).
    fn forward(mut self, p: &mut Parts, hooks: Hooks) -> Result<(), DaemonError> {
        if hooks.wedge_signals {
            let mut usr1 = signal(SignalKind::user_defined1()).map_err(DaemonError::Signals)?;
            let mut usr2 = signal(SignalKind::user_defined2()).map_err(DaemonError::Signals)?;
            let (tx, media) = (p.events.clone(), p.media.clone());
            p.tasks.spawn(forever("test hook", async move {
                loop {
                    tokio::select! {
                        // Test hook: block the GStreamer thread.
                        _ = usr1.recv() => media.wedge(),
                        // Test hook: stop the supervisor loop answering.
                        _ = usr2.recv() => { let _ = tx.send(Event::Wedge).await; }
                    }
                }
            }));
        }
        let tx = p.events.clone();
        p.tasks.spawn(forever("signal", async move {
            loop {
                let ev = tokio::select! {
                    // systemd stop, kill: shut down.
                    _ = self.term.recv() => Event::Shutdown,
                    // Ctrl-C in a terminal: shut down.
                    _ = self.int.recv() => Event::Shutdown,
                    // systemctl reload: re-read the config.
                    _ = self.hup.recv() => Event::Reload { reply: None },
                };
                if matches!(ev, Event::Shutdown) {
                    tracing::info!("shutting down");
                }
                // The supervisor gone means shutdown is under way: wait for it.
                if tx.send(ev).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }));
        Ok(())
    }
}

/// The deadman's monitor; its state reaches the snapshot through the supervisor.
fn start_deadman(p: &mut Parts, devices: &watch::Source) {
    let (dead_tx, mut dead_rx) = watch_channel::channel(crate::state::DeadmanStatus::default());
    let deadman = crate::deadman::monitor::run(
        p.config.deadman.clone(),
        crate::deadman::Paths::new(&p.config.devices.state_dir, &devices.roots.procfs),
        p.snapshot.clone(),
        move |st| {
            let _ = dead_tx.send(st);
        },
    );
    p.tasks
        .spawn(async move { DaemonError::Deadman(deadman.await) });
    let tx = p.events.clone();
    p.tasks.spawn(forever("deadman status", async move {
        while dead_rx.changed().await.is_ok() {
            let st = dead_rx.borrow_and_update().clone();
            if tx.send(Event::Deadman(st)).await.is_err() {
                break;
            }
        }
    }));
}

/// From READY on, each snapshot (and a tick, for reminders) goes through the
/// webhooks' trackers; what they call for is queued, never waited for.
fn start_alerts(p: &mut Parts) {
    let Some(mut alerts) = p.alerts.take() else {
        return;
    };
    if p.config.alerts.is_empty() {
        return;
    }
    let mut snapshot = p.snapshot.clone();
    let mut ready = p.ready.subscribe();
    p.tasks.spawn(forever("alerts", async move {
        if ready.wait_for(|r| *r).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(ALERT_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let snap = snapshot.borrow_and_update().clone();
            alerts.feed(&snap, Instant::now(), std::time::SystemTime::now());
            tokio::select! {
                changed = snapshot.changed() => if changed.is_err() { break },
                _ = tick.tick() => {}
            }
        }
        std::future::pending::<()>().await;
    }));
}

/// READY once the supervisor has handled everything queued so far (the
/// coldplug pass included) and the first D-Bus attempt is over (or
/// FIRST_BUS_WAIT passed), then STATUS= on every change, and the watchdog fed
/// while the supervisor and the GStreamer thread both answer.
async fn start_systemd(
    p: &mut Parts,
    probes: mpsc::Sender<crate::supervisor::Probe>,
    bus_status: Option<watch_channel::Receiver<crate::state::BusStatus>>,
    started: Instant,
) {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let _ = probes.send(ready_tx).await;
    let streams = p.config.streams.len();
    let status_snap = p.snapshot.clone();
    let media = p.media.clone();
    let ready = p.ready.clone();
    p.tasks.spawn(forever("systemd status", async move {
        if let Some(mut rx) = bus_status {
            let first_try_over = rx
                .wait_for(|b| b.state != crate::state::BusState::Connecting || b.detail.is_some());
            let _ = tokio::time::timeout(FIRST_BUS_WAIT, first_try_over).await;
        }
        if ready_rx.await.is_ok() {
            // The supervisor sent its mounts before it answered; this follows them.
            media.settled();
            tracing::info!(
                streams,
                startup_ms = started.elapsed().as_millis() as u64,
                "harkd ready"
            );
            crate::notify::ready(&status_snap.borrow().status_line());
            ready.send_replace(true);
            if std::env::var_os("NOTIFY_SOCKET").is_some() {
                crate::notify::status_loop(status_snap).await;
            }
        }
        std::future::pending::<()>().await;
    }));
    if let Some(interval) = sd_notify::watchdog_enabled() {
        p.tasks.spawn(forever(
            "systemd watchdog",
            crate::notify::watchdog(interval, probes, p.media.clone()),
        ));
    }
}

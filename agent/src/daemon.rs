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

pub async fn run(
    config: Config,
    devices: watch::Source,
    bus: Option<crate::dbus::Bus>,
    hooks: Hooks,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    let config = Arc::new(config);
    let mut tasks: JoinSet<DaemonError> = JoinSet::new();

    // 1. Signals first, so a SIGTERM during start-up is not lost.
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    // 2. The media thread: GStreamer, and the RTSP server bound to its port.
    let (reports, inbox) = media::reports::channel();
    let (media, media_thread) = media::spawn(&config.rtsp, config.health.level_interval, reports)?;
    let host = match config.rtsp.bind {
        ip if ip.is_unspecified() => "<host>".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url_base = format!("rtsp://{host}:{}/", media.port);
    tracing::info!(url_base = %url_base, auth = config.rtsp.auth.is_some(), "RTSP server listening");

    // 3. The name ledger: which device got which name, across reboots (read on
    // a blocking thread; written by its own thread from now on).
    let ledger_path = config.devices.state_dir.join("names.json");
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = ledger_path.clone();
    let (names, problem) = tokio::task::spawn_blocking(move || ledger::load(&path, unix_now))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "name ledger not read");
            (Default::default(), None)
        });
    if let Some(p) = problem {
        tracing::error!(error = %p, "name ledger");
    }
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

    // 5. The HTTP endpoint (loopback unless configured otherwise), bound now so
    // a taken port is an error at start, not later.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| DaemonError::Http(config.http.listen, e))?;
    tracing::info!(listen = %config.http.listen, "HTTP status endpoint listening");
    let ctx = crate::http::Context {
        snapshot: snapshot.clone(),
        started,
        rtsp_port: media.port,
    };
    tasks.spawn(async move {
        DaemonError::HttpEnded(match crate::http::serve(listener, ctx).await {
            Ok(()) => "stopped".into(),
            Err(e) => e.to_string(),
        })
    });

    // 6. Devices: the watcher first, then the cards present now (named
    // together; read on a blocking thread, since probing a card that is not
    // USB opens it), then hotplug. A card plugged in between is seen twice at
    // worst (a re-announcement of the same device changes nothing).
    let mut watcher = None;
    if config.devices.enabled {
        let (dev_tx, mut dev_rx) = mpsc::channel(DEVICE_QUEUE);
        let w = match &devices.injected {
            Some(path) => watch::spawn_injected(path.clone(), devices.roots.clone(), dev_tx),
            None => watch::spawn_udev(devices.roots.clone(), dev_tx),
        }
        .map_err(DaemonError::Devices)?;
        let roots = devices.roots.clone();
        let cards = tokio::task::spawn_blocking(move || watch::coldplug(&roots))
            .await
            .unwrap_or_default();
        tracing::info!(cards = cards.len(), source = %devices.describe(), "devices watched");
        let _ = events_tx.send(Event::Coldplug(cards)).await;
        let fwd = events_tx.clone();
        tasks.spawn(forever("device event forwarder", async move {
            while let Some(ev) = dev_rx.recv().await {
                if fwd.send(Event::Device(ev)).await.is_err() {
                    break;
                }
            }
        }));
        watcher = Some(w);
    }
    let (watcher_ended, watcher_thread) = match watcher {
        Some(w) => (Some(w.ended), Some(w.thread)),
        None => (None, None),
    };

    // 7. D-Bus, never in the way of the streams: a supervising task connects
    // (objects served, then the name taken) when it can, retries with backoff
    // when it cannot, and connects afresh when the bus restarts. Its state
    // reaches the snapshot through the supervisor, like the deadman's.
    let bus_status = bus.map(|b| {
        let (bus_tx, bus_rx) = watch_channel::channel(crate::state::BusStatus::connecting(b));
        let serve = crate::dbus::serve(
            b,
            snapshot.clone(),
            events_tx.clone(),
            url_base.clone(),
            move |st| {
                let _ = bus_tx.send(st);
            },
        );
        tasks.spawn(forever("D-Bus", serve));
        let (tx, mut rx) = (events_tx.clone(), bus_rx.clone());
        tasks.spawn(forever("D-Bus status", async move {
            loop {
                let st = rx.borrow_and_update().clone();
                if tx.send(Event::Bus(st)).await.is_err() || rx.changed().await.is_err() {
                    break;
                }
            }
        }));
        bus_rx
    });

    // 8. Signals (and the test hooks) into the supervisor's one queue.
    if hooks.wedge_signals {
        let mut usr1 = signal(SignalKind::user_defined1()).map_err(DaemonError::Signals)?;
        let mut usr2 = signal(SignalKind::user_defined2()).map_err(DaemonError::Signals)?;
        let (tx, media) = (events_tx.clone(), media.clone());
        tasks.spawn(forever("test hook", async move {
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
    let sig_tx = events_tx.clone();
    tasks.spawn(forever("signal", async move {
        loop {
            let ev = tokio::select! {
                // systemd stop, kill: shut down.
                _ = sigterm.recv() => Event::Shutdown,
                // Ctrl-C in a terminal: shut down.
                _ = sigint.recv() => Event::Shutdown,
                // systemctl reload: re-read the config.
                _ = sighup.recv() => Event::Reload { reply: None },
            };
            if matches!(ev, Event::Shutdown) {
                tracing::info!("shutting down");
            }
            // The supervisor gone means shutdown is under way: wait for it.
            if sig_tx.send(ev).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }));

    // 9. The deadman's eyes: good-boot marks, and "no stream has run for too
    // long". Its state reaches the snapshot through the supervisor.
    let (dead_tx, mut dead_rx) = watch_channel::channel(crate::state::DeadmanStatus::default());
    let deadman = crate::deadman::monitor::run(
        config.deadman.clone(),
        crate::deadman::Paths::new(&config.devices.state_dir, &devices.roots.procfs),
        snapshot.clone(),
        move |st| {
            let _ = dead_tx.send(st);
        },
    );
    tasks.spawn(async move { DaemonError::Deadman(deadman.await) });
    let tx = events_tx.clone();
    tasks.spawn(forever("deadman status", async move {
        while dead_rx.changed().await.is_ok() {
            let st = dead_rx.borrow_and_update().clone();
            if tx.send(Event::Deadman(st)).await.is_err() {
                break;
            }
        }
    }));

    // 10. systemd: READY once the supervisor has handled everything queued so
    // far (the coldplug pass included) and the first D-Bus attempt is over (or
    // FIRST_BUS_WAIT passed), then STATUS= on every change, and the watchdog
    // fed while the supervisor and the GStreamer thread both answer.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let _ = probe_tx.send(ready_tx).await;
    let streams = config.streams.len();
    let status_snap = snapshot.clone();
    tasks.spawn(forever("systemd status", async move {
        if let Some(mut rx) = bus_status {
            let first_try_over = rx
                .wait_for(|b| b.state != crate::state::BusState::Connecting || b.detail.is_some());
            let _ = tokio::time::timeout(FIRST_BUS_WAIT, first_try_over).await;
        }
        if ready_rx.await.is_ok() {
            tracing::info!(
                streams,
                startup_ms = started.elapsed().as_millis() as u64,
                "harkd ready"
            );
            crate::notify::ready(&status_snap.borrow().status_line());
            if std::env::var_os("NOTIFY_SOCKET").is_some() {
                crate::notify::status_loop(status_snap).await;
            }
        }
        std::future::pending::<()>().await;
    }));
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tasks.spawn(forever(
            "watchdog",
            crate::notify::watchdog(interval, probe_tx.clone(), media.clone()),
        ));
    }
    drop(events_tx);
    drop(probe_tx);

    // 11. Run until a shutdown request or a fatal error.
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

    // 12. Bounded shutdown: end clients, stop pipelines, stop the media thread,
    // then every task and the watcher thread (its events have nowhere to go).
    crate::notify::stopping();
    let stopping = Instant::now();
    media.shutdown(SHUTDOWN_DEADLINE).await;
    join_within("hark-gst", media_thread, JOIN_DEADLINE).await;
    tasks.shutdown().await;
    if let Some(t) = watcher_thread {
        join_within("device watcher", t, JOIN_DEADLINE).await;
    }
    tracing::info!(took_ms = stopping.elapsed().as_millis() as u64, "stopped");
    result
}

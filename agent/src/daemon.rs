//! Start-up: builds every subsystem in order, one commented step each, runs the
//! supervisor until a signal or a fatal error, then shuts down within a bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::devices::{ledger, watch};
use crate::media::{self, MediaError};
use crate::supervisor::{DeviceIo, Event, Supervisor, SupervisorError};

/// How long shutdown may wait for capture devices to close (the whole shutdown
/// must finish within 2 s).
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(1500);

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
    #[error("cannot listen for HTTP on {0}: {1}")]
    Http(std::net::SocketAddr, std::io::Error),
    #[error("the HTTP endpoint ended: {0}")]
    HttpEnded(String),
    #[error("cannot serve org.hark.Agent1 on the {0:?} bus: {1}")]
    Dbus(crate::dbus::Bus, zbus::Error),
    #[error("the D-Bus connection ended: {0}")]
    DbusEnded(String),
    #[error("the device watcher ended")]
    WatcherEnded,
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

pub async fn run(
    config: Config,
    devices: watch::Source,
    bus: Option<crate::dbus::Bus>,
    hooks: Hooks,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    let config = Arc::new(config);

    // 1. Signals first, so a SIGTERM during start-up is not lost.
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    // 2. The media thread: GStreamer, and the RTSP server bound to its port.
    let (media_tx, mut media_rx) = mpsc::unbounded_channel();
    let (media, media_thread) = media::spawn(&config.rtsp, config.health.level_interval, media_tx)?;
    let host = match config.rtsp.bind {
        ip if ip.is_unspecified() => "<host>".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    tracing::info!(
        url_base = %format!("rtsp://{host}:{}/", media.port),
        auth = config.rtsp.auth.is_some(),
        "RTSP server listening"
    );

    // 3. The name ledger: which device got which name, across reboots.
    let ledger_path = config.devices.state_dir.join("names.json");
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (names, problem) = ledger::load(&ledger_path, unix_now);
    if let Some(p) = problem {
        tracing::error!(error = %p, "name ledger");
    }

    // 4. The supervisor, which owns the streams and starts their pipelines.
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let device_io = DeviceIo {
        sysfs: devices.roots.sysfs.clone(),
        ledger_path,
    };
    let (supervisor, snapshot) = Supervisor::new(config.clone(), media.clone(), names, device_io);
    let snapshot_for_dbus = snapshot.clone();
    let snapshot_for_notify = snapshot.clone();

    // 5. The HTTP endpoint (loopback unless configured otherwise), bound now so
    // a taken port is an error at start, not later.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| DaemonError::Http(config.http.listen, e))?;
    tracing::info!(listen = %config.http.listen, "HTTP status endpoint listening");
    let http = tokio::spawn(crate::http::serve(
        listener,
        crate::http::Context {
            snapshot,
            started,
            rtsp_port: media.port,
        },
    ));

    // 6. Devices: the cards present now (named together), then hotplug. The
    // watcher starts before the coldplug pass, so a card plugged in between is
    // seen twice at worst (handled as a re-announcement), never missed.
    let mut watcher_ended = None;
    if config.devices.enabled {
        let (dev_tx, mut dev_rx) = mpsc::unbounded_channel();
        let ended = match &devices.injected {
            Some(path) => watch::spawn_injected(path.clone(), devices.roots.clone(), dev_tx),
            None => watch::spawn_udev(devices.roots.clone(), dev_tx),
        }
        .map_err(DaemonError::Devices)?;
        watcher_ended = Some(ended);
        let cards = watch::coldplug(&devices.roots);
        tracing::info!(cards = cards.len(), source = %devices.describe(), "devices watched");
        let _ = events_tx.send(Event::Coldplug(cards));
        let fwd = events_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = dev_rx.recv().await {
                if fwd.send(Event::Device(ev)).is_err() {
                    break;
                }
            }
        });
    }

    // 7. D-Bus: objects served, then the name taken; a bus that was asked for
    // and cannot be had is an error at start.
    let url_base = format!("rtsp://{host}:{}/", media.port);
    let dbus_task = match bus {
        None => None,
        Some(b) => {
            let conn = crate::dbus::connect(b, &snapshot_for_dbus, events_tx.clone(), &url_base)
                .await
                .map_err(|e| DaemonError::Dbus(b, e))?;
            tracing::info!(bus = ?b, name = crate::dbus::BUS_NAME, "D-Bus name taken");
            Some(tokio::spawn(crate::dbus::run(
                conn,
                snapshot_for_dbus,
                url_base.clone(),
            )))
        }
    };

    // 8. Forward media reports and signals into the supervisor's one channel.
    let fwd = events_tx.clone();
    tokio::spawn(async move {
        while let Some(ev) = media_rx.recv().await {
            if fwd.send(Event::Media(ev)).is_err() {
                break;
            }
        }
    });
    if hooks.wedge_signals {
        let mut usr1 = signal(SignalKind::user_defined1()).map_err(DaemonError::Signals)?;
        let mut usr2 = signal(SignalKind::user_defined2()).map_err(DaemonError::Signals)?;
        let (tx, media) = (events_tx.clone(), media.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // Test hook: block the GStreamer thread.
                    _ = usr1.recv() => media.wedge(),
                    // Test hook: stop the supervisor loop answering.
                    _ = usr2.recv() => { let _ = tx.send(Event::Wedge); }
                }
            }
        });
    }
    let sig_tx = events_tx.clone();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                // systemd stop, kill: shut down.
                _ = sigterm.recv() => Event::Shutdown,
                // Ctrl-C in a terminal: shut down.
                _ = sigint.recv() => Event::Shutdown,
                // systemctl reload: re-read the config.
                _ = sighup.recv() => Event::Reload,
            };
            let stop = matches!(ev, Event::Shutdown);
            if stop {
                tracing::info!("shutting down");
            }
            if sig_tx.send(ev).is_err() || stop {
                break;
            }
        }
    });

    // 9. The deadman's eyes: good-boot marks, and "no stream has run for too long".
    let deadman = crate::deadman::monitor::run(
        config.deadman.clone(),
        crate::deadman::Paths::new(&config.devices.state_dir, &devices.roots.procfs),
        snapshot_for_notify.clone(),
        {
            let tx = events_tx.clone();
            move |st| {
                let _ = tx.send(Event::Deadman(st));
            }
        },
    );

    // 10. systemd: READY once the supervisor has handled everything queued so
    // far (the coldplug pass included), then STATUS= on every change, and the
    // watchdog fed while the supervisor and the GStreamer thread both answer.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let _ = events_tx.send(Event::Ping(ready_tx));
    let streams = config.streams.len();
    let status_snap = snapshot_for_notify.clone();
    tokio::spawn(async move {
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
    });
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(crate::notify::watchdog(
            interval,
            events_tx.clone(),
            media.clone(),
        ));
    }
    drop(events_tx);

    // 11. Run until a shutdown request or a fatal error.
    let watcher_gone = async {
        match watcher_ended {
            Some(ended) => {
                let _ = ended.await;
            }
            None => std::future::pending().await,
        }
    };
    let dbus_ended = async {
        match dbus_task {
            Some(t) => t.await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        // The normal path: a signal asked the supervisor to stop (or it failed).
        r = supervisor.run(events_rx) => r.map_err(DaemonError::from),
        // Without its device watcher the agent would miss every plug: restart.
        () = watcher_gone => Err(DaemonError::WatcherEnded),
        // The D-Bus connection is not optional once asked for.
        r = dbus_ended => Err(DaemonError::DbusEnded(match r {
            Ok(Ok(())) => "stopped".into(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        })),
        // No stream has run for too long and a reboot would be allowed.
        reason = deadman => Err(DaemonError::Deadman(reason)),
        // The HTTP server is not optional: if it dies, so does the daemon.
        r = http => Err(DaemonError::HttpEnded(match r {
            Ok(Ok(())) => "stopped".into(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        })),
    };

    // 12. Bounded shutdown: end clients, stop pipelines, stop the media thread.
    crate::notify::stopping();
    let stopping = Instant::now();
    media.shutdown(SHUTDOWN_DEADLINE).await;
    if media_thread.is_finished() {
        let _ = media_thread.join();
    }
    tracing::info!(took_ms = stopping.elapsed().as_millis() as u64, "stopped");
    result
}

//! `harkd`: parses the command line, sets up logging, and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use hark_agent::cli::{Cli, Command, LogFormat, exit};
use hark_agent::config::{Config, Source};

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HARK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd the journal timestamps every line; do not print a second one.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_thread_names(false);
    match (format, journal) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}

/// The config for the report commands: the given file, else the system one if it
/// exists, else the built-in defaults.
fn report_config(path: Option<std::path::PathBuf>, system: bool) -> Result<Config, ExitCode> {
    let path = path.or_else(|| {
        let p = std::path::PathBuf::from(hark_agent::cli::DEFAULT_CONFIG);
        (system && p.exists()).then_some(p)
    });
    let loaded = match &path {
        Some(p) => Config::load(p),
        None => Config::parse_bytes(std::path::Path::new("(built-in defaults)"), b"[devices]\n"),
    };
    loaded.map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(exit::CONFIG)
    })
}

/// The config for `harkd deadman`: `--config`, else /etc/hark/hark.toml.
///
/// - Nothing at that path (the package's file absent): the built-in defaults,
///   in which the deadman is disabled (so `decide` never reboots), said in one
///   warning line.
/// - A file that cannot be read or is invalid: an error naming the file and
///   what is wrong, exit 3; never the defaults. For `decide` that means no
///   reboot: a policy guessed from defaults could reboot-loop a board whose
///   config is broken, and a reboot cannot repair a config.
fn deadman_config(path: Option<std::path::PathBuf>, decide: bool) -> Result<Config, ExitCode> {
    let path = path.unwrap_or_else(|| hark_agent::cli::DEFAULT_CONFIG.into());
    if let Err(e) = std::fs::symlink_metadata(&path)
        && e.kind() == std::io::ErrorKind::NotFound
    {
        tracing::warn!(
            "no config file at {}: using the built-in defaults, in which the deadman is \
             disabled{}",
            path.display(),
            if decide { " (no reboot)" } else { "" }
        );
        return Config::parse_bytes(std::path::Path::new("(built-in defaults)"), b"[devices]\n")
            .map_err(|e| {
                tracing::error!("the built-in defaults do not parse: {e}");
                ExitCode::from(exit::FAILURE)
            });
    }
    Config::load(&path).map_err(|e| {
        if decide {
            tracing::error!(
                "deadman: no reboot: the config {} cannot be used ({e}); a reboot is never \
                 decided on the built-in defaults instead (exit {})",
                path.display(),
                exit::CONFIG
            );
        } else {
            tracing::error!("the config {} cannot be used: {e}", path.display());
        }
        ExitCode::from(exit::CONFIG)
    })
}

fn report(roots: &hark_agent::devices::scan::Roots, config: &Config) -> ExitCode {
    use hark_agent::devices::{ledger, report, watch};
    println!("config: {}", config.path.display());
    let ledger_path = config.devices.state_dir.join("names.json");
    let (names, problem) = ledger::peek(&ledger_path);
    if let Some(p) = problem {
        println!("name ledger unreadable ({p}); names shown as for a new ledger");
    }
    let cards = watch::coldplug(roots);
    print!("{}", report::devices(&cards, config, &names));
    ExitCode::from(exit::OK)
}

/// A single-threaded tokio runtime (the agent's blocking work has its own threads).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("harkd: cannot start the async runtime: {e}");
            ExitCode::from(exit::FAILURE)
        })
}

/// Why harkd.service failed, from the variables systemd gives `OnFailure=` units.
fn failure_reason() -> (String, Option<u8>) {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let status = var("MONITOR_EXIT_STATUS").and_then(|s| s.parse::<u8>().ok());
    let unit = var("MONITOR_UNIT").unwrap_or_else(|| "harkd.service".into());
    let reason = match (var("MONITOR_SERVICE_RESULT"), status) {
        (Some(r), Some(exit::DEADMAN)) => format!("{unit}: {r}: no stream could run"),
        (Some(r), Some(s)) => format!("{unit}: {r}, exit status {s}"),
        (Some(r), None) => format!("{unit}: {r}"),
        (None, _) => "asked on the command line".into(),
    };
    (reason, status)
}

fn deadman(
    action: hark_agent::cli::DeadmanAction,
    config: &Config,
    procfs: &std::path::Path,
) -> ExitCode {
    use hark_agent::cli::DeadmanAction;
    use hark_agent::deadman::{self, Outcome, Paths, reboot};
    let paths = Paths::new(&config.devices.state_dir, procfs);
    let d = &config.deadman;
    let done = |r: Result<(), deadman::DeadmanError>| match r {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("harkd deadman: {e}");
            ExitCode::from(exit::FAILURE)
        }
    };
    match action {
        DeadmanAction::Status => done(deadman::report(&paths, d).map(|r| print!("{r}"))),
        DeadmanAction::MarkGood => done(deadman::mark_good(&paths, d).map(|_| {
            println!("this boot is marked good ({})", paths.ledger.display());
        })),
        DeadmanAction::Reset => done(deadman::reset(&paths, d).map(|_| {
            println!("reboot ledger reset ({})", paths.ledger.display());
        })),
        DeadmanAction::Decide {
            reason,
            no_wait,
            record_reboot,
        } => {
            let (from_env, status) = failure_reason();
            let reason = reason.unwrap_or(from_env);
            if !d.enabled {
                println!(
                    "deadman disabled in {}: no reboot ({reason})",
                    config.path.display()
                );
                return ExitCode::from(exit::OK);
            }
            if status == Some(exit::CONFIG) {
                println!(
                    "no reboot: harkd stopped on a configuration error, which a reboot cannot fix"
                );
                return ExitCode::from(exit::OK);
            }
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let wait = !no_wait;
            let outcome = rt.block_on(async {
                match (record_reboot, d.reboot) {
                    (Some(file), _) => {
                        deadman::decide(&paths, d, &reason, &reboot::Record(file), wait).await
                    }
                    (None, hark_agent::config::RebootMethod::Logind) => {
                        deadman::decide(&paths, d, &reason, &reboot::Logind, wait).await
                    }
                    (None, hark_agent::config::RebootMethod::Systemctl) => {
                        deadman::decide(&paths, d, &reason, &reboot::Systemctl, wait).await
                    }
                }
            });
            done(outcome.map(|o| match o {
                Outcome::Rebooting => println!("rebooting: {reason}"),
                Outcome::Refused(r) => println!("reboot refused: {r}"),
            }))
        }
    }
}

/// At most two glibc malloc arenas (unless `MALLOC_ARENA_MAX` says otherwise).
/// By default glibc gives threads arenas of their own, up to 8 per core, and
/// memory freed in one is not reused by another; GStreamer's streaming threads
/// come and go with every pipeline and client, so the agent's resident memory
/// creeps up. Measured in the 3-minute fault soak (2 cores): RSS grew 0.8 MiB
/// with two arenas, 1.8-2.1 MiB with the default. Called before any thread
/// starts.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::CheckConfig { path } => match Config::load(&path) {
            Ok(c) => {
                println!("{}: ok", path.display());
                println!(
                    "rtsp: {}:{}{}",
                    c.rtsp.bind,
                    c.rtsp.port,
                    if c.rtsp.auth.is_some() {
                        " (authentication on)"
                    } else {
                        ""
                    }
                );
                let h = &c.http;
                println!(
                    "http: http://{}/ (status page; {}; {})",
                    h.listen,
                    match h.max_listeners {
                        0 => "browser listening off".to_string(),
                        n => format!("up to {n} browsers listening"),
                    },
                    match (&h.auth, c.rtsp.auth == h.auth) {
                        (None, _) => "no credentials asked",
                        (Some(_), true) => "the RTSP credentials asked",
                        (Some(_), false) => "credentials asked",
                    }
                );
                let d = &c.devices;
                if d.enabled {
                    println!(
                        "devices: discovered (ALSA {}, ledger in {}{}{})",
                        d.alsa_device,
                        d.state_dir.display(),
                        if d.pin_card_id {
                            ", card ids pinned"
                        } else {
                            ""
                        },
                        if d.allow_non_usb {
                            ", non-USB cards too"
                        } else {
                            ""
                        },
                    );
                } else {
                    println!("devices: discovery off");
                }
                for r in &d.rules {
                    let mut matches = vec![];
                    if let Some(s) = &r.serial {
                        matches.push(format!("serial {s:?}"));
                    }
                    if let Some((v, p)) = r.vendor_product {
                        matches.push(format!("vendor:product {v:04x}:{p:04x}"));
                    }
                    if let Some(p) = &r.port {
                        matches.push(format!("port {p}"));
                    }
                    println!(
                        "device /{}: {}, {}",
                        r.name,
                        matches.join(" and "),
                        r.settings.codec.as_str()
                    );
                }
                for s in &c.streams {
                    let source = match &s.source {
                        Source::Tone { freq_hz, .. } => format!("tone {freq_hz} Hz"),
                        Source::Alsa { device, .. } => format!("alsa {device}"),
                        Source::Group(g) => match &g.members {
                            hark_agent::config::Members::Listed(m) => format!(
                                "{} of {}",
                                g.mode.as_str(),
                                m.iter()
                                    .map(|m| m.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            hark_agent::config::Members::AllDevices => {
                                format!("{} of every device", g.mode.as_str())
                            }
                        },
                    };
                    let kind = if matches!(s.source, Source::Group(_)) {
                        "group"
                    } else {
                        "stream"
                    };
                    println!(
                        "{kind} /{}: {source}, {} {} Hz {} ch",
                        s.name,
                        s.encoding.codec.as_str(),
                        s.encoding.sample_rate,
                        s.encoding.channels
                    );
                }
                for a in &c.alerts {
                    println!("{}", hark_agent::alerts::send::describe(a));
                }
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(exit::CONFIG)
            }
        },
        Command::Devices { config } => match report_config(config, true) {
            Ok(c) => report(&hark_agent::devices::scan::Roots::system(), &c),
            Err(code) => code,
        },
        Command::Probe {
            sysfs_root,
            procfs_root,
            config,
        } => match report_config(config, false) {
            Ok(c) => report(
                &hark_agent::devices::scan::Roots::tree(sysfs_root, procfs_root),
                &c,
            ),
            Err(code) => code,
        },
        Command::UdevRules { config } => match report_config(config, true) {
            Ok(c) => {
                let path = c.devices.state_dir.join("names.json");
                let (names, problem) = hark_agent::devices::ledger::peek(&path);
                if let Some(p) = problem {
                    eprintln!("harkd: the name ledger is unreadable: {p}");
                    return ExitCode::from(exit::FAILURE);
                }
                print!(
                    "{}",
                    hark_agent::devices::report::udev_rules(&names, &path.display().to_string())
                );
                ExitCode::from(exit::OK)
            }
            Err(code) => code,
        },
        Command::Deadman {
            action,
            config,
            procfs_root,
        } => {
            init_logging(LogFormat::Text);
            let decide = matches!(action, hark_agent::cli::DeadmanAction::Decide { .. });
            match deadman_config(config, decide) {
                Ok(c) => deadman(action, &c, &procfs_root),
                Err(code) => code,
            }
        }
        Command::Run {
            config,
            log_format,
            bus,
            sysfs_root,
            procfs_root,
            uevents,
            test_hooks,
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(exit::CONFIG);
                }
            };
            init_logging(log_format);
            if test_hooks {
                // Every state-file write sleeps this long first (a slow SD card).
                match hark_agent::persist::test_delay_from_env() {
                    Ok(Some(delay)) => {
                        tracing::warn!(?delay, "test hook: every state-file write is slowed");
                        hark_agent::persist::set_test_delay(delay);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("harkd: {e}");
                        return ExitCode::from(exit::USAGE);
                    }
                }
            }
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let devices = hark_agent::devices::watch::Source {
                roots: if sysfs_root == std::path::Path::new("/sys")
                    && procfs_root == std::path::Path::new("/proc")
                {
                    hark_agent::devices::scan::Roots::system()
                } else {
                    hark_agent::devices::scan::Roots::tree(sysfs_root, procfs_root)
                },
                injected: uevents,
            };
            let bus = match bus {
                hark_agent::cli::BusChoice::System => Some(hark_agent::dbus::Bus::System),
                hark_agent::cli::BusChoice::Session => Some(hark_agent::dbus::Bus::Session),
                hark_agent::cli::BusChoice::None => None,
            };
            let hooks = hark_agent::daemon::Hooks {
                wedge_signals: test_hooks,
            };
            match rt.block_on(hark_agent::daemon::run(config, devices, bus, hooks)) {
                Ok(()) => ExitCode::from(exit::OK),
                Err(e @ hark_agent::daemon::DaemonError::Deadman(_)) => {
                    tracing::error!(error = %e, "harkd stops");
                    ExitCode::from(exit::DEADMAN)
                }
                Err(e) => {
                    tracing::error!(error = %e, "harkd failed");
                    ExitCode::from(exit::FAILURE)
                }
            }
        }
    }
}

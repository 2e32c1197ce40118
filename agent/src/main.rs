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

fn main() -> ExitCode {
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
                    };
                    println!(
                        "stream /{}: {source}, {} {} Hz {} ch",
                        s.name,
                        s.encoding.codec.as_str(),
                        s.encoding.sample_rate,
                        s.encoding.channels
                    );
                }
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(exit::CONFIG)
            }
        },
        Command::Run {
            config,
            log_format,
            sysfs_root,
            procfs_root,
            uevents,
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(exit::CONFIG);
                }
            };
            init_logging(log_format);
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("harkd: cannot start the async runtime: {e}");
                    return ExitCode::from(exit::FAILURE);
                }
            };
            let devices = hark_agent::devices::watch::Source {
                roots: hark_agent::devices::scan::Roots {
                    sysfs: sysfs_root,
                    procfs: procfs_root,
                },
                injected: uevents,
            };
            match rt.block_on(hark_agent::daemon::run(config, devices)) {
                Ok(()) => ExitCode::from(exit::OK),
                Err(e) => {
                    tracing::error!(error = %e, "harkd failed");
                    ExitCode::from(exit::FAILURE)
                }
            }
        }
    }
}

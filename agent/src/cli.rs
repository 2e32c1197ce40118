//! The command line: subcommands, options, and the documented exit codes.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes, documented in the README. systemd restarts on any non-zero code.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (cannot bind the RTSP port, media thread died, ...).
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The configuration file is missing, unreadable or invalid.
    pub const CONFIG: u8 = 3;
}

pub const DEFAULT_CONFIG: &str = "/etc/hark/hark.toml";

#[derive(Debug, Parser)]
#[command(
    name = "harkd",
    version,
    about = "USB microphones as stable RTSP streams",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BusChoice {
    /// The system bus (needs configs/dbus/org.hark.Agent1.conf installed).
    System,
    /// The session bus (development, tests).
    Session,
    /// No D-Bus at all.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (no timestamps under systemd: the journal adds them).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log output format (stderr). The filter comes from HARK_LOG (default "info").
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// The D-Bus bus to serve org.hark.Agent1 on.
        #[arg(long, value_enum, default_value_t = BusChoice::System)]
        bus: BusChoice,
        /// Where sysfs is (for tests and captured trees).
        #[arg(long, default_value = "/sys", hide = true)]
        sysfs_root: PathBuf,
        /// Where procfs is (for tests and captured trees).
        #[arg(long, default_value = "/proc", hide = true)]
        procfs_root: PathBuf,
        /// Read device events ("add N", "remove N") from this file or FIFO instead
        /// of udev (for tests).
        #[arg(long, hide = true)]
        uevents: Option<PathBuf>,
    },
    /// Validate a configuration file and print what it sets up.
    CheckConfig {
        /// Configuration file.
        path: PathBuf,
    },
    /// List the sound cards present and what harkd would do with each (identity,
    /// name, capabilities, plan). Changes nothing.
    Devices {
        /// Configuration file (default: /etc/hark/hark.toml if it exists, else
        /// the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Like `devices`, against a captured /sys and /proc tree (for bug reports).
    Probe {
        #[arg(long)]
        sysfs_root: PathBuf,
        #[arg(long)]
        procfs_root: PathBuf,
        /// Configuration file (default: the built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print udev rules that give every named microphone its ALSA card id at
    /// boot, from the name ledger.
    UdevRules {
        /// Configuration file (for the state directory; default as for `devices`).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

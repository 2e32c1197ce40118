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
    /// The configuration file is missing, unreadable or invalid. (`harkd
    /// deadman` uses the built-in defaults when there is no file at all, and
    /// says so; for an unreadable or invalid one it exits 3, and `decide` does
    /// not reboot.)
    pub const CONFIG: u8 = 3;
    /// No stream has run for `deadman.unhealthy_after_s` and the reboot ledger
    /// would allow a reboot: the unit's `OnFailure=` deadman decides.
    pub const DEADMAN: u8 = 4;
}

pub const DEFAULT_CONFIG: &str = "/etc/hark/hark.toml";

#[derive(Debug, Parser)]
#[command(
    name = "harkd",
    version,
    about = "USB microphones as stable RTSP streams",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration error, \
                  4 no stream could run for too long (the deadman decides on a reboot)."
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
        /// Test hooks: SIGUSR1 wedges the GStreamer thread, SIGUSR2 the
        /// supervisor (to test the watchdog); HARK_TEST_SLOW_STORE_MS=N makes
        /// every state-file write sleep N ms first (a slow SD card).
        #[arg(long, hide = true)]
        test_hooks: bool,
    },
    /// The reboot deadman and its ledger.
    Deadman {
        #[command(subcommand)]
        action: DeadmanAction,
        /// Configuration file (default: /etc/hark/hark.toml). When there is no
        /// file at that path, the built-in defaults, where the deadman is
        /// disabled, with a warning; a file that cannot be read or is invalid is
        /// an error (exit 3), and `decide` then never reboots.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Where procfs is (boot ID and uptime; for tests).
        #[arg(long, default_value = "/proc", hide = true, global = true)]
        procfs_root: PathBuf,
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

#[derive(Debug, Subcommand)]
pub enum DeadmanAction {
    /// Show the ledger: reboots in the window, good-boot mark, whether a
    /// reboot would be allowed now. Changes nothing.
    Status,
    /// Mark this boot good (unlocks a ledger that was lost or corrupt).
    MarkGood,
    /// Forget every recorded reboot and refusal, and unlock.
    Reset,
    /// Decide on a reboot after harkd.service failed (its `OnFailure=` unit):
    /// reboot if the ledger allows, else record the refusal and stay up. Exit
    /// 0 when it decided (rebooting, refused, disabled), 3 with no reboot when
    /// the config cannot be read or is invalid, 1 on any other failure (no
    /// reboot either).
    Decide {
        /// Why (default: from systemd's MONITOR_* variables).
        #[arg(long)]
        reason: Option<String>,
        /// When it is too soon after the last reboot, refuse at once instead of
        /// waiting for the spacing to pass.
        #[arg(long)]
        no_wait: bool,
        /// Record the reboot request in this file instead of rebooting (tests).
        #[arg(long, hide = true)]
        record_reboot: Option<PathBuf>,
    },
}

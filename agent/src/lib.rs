//! harkd: USB microphones as stable RTSP streams.
//!
//! The library holds everything; `main.rs` only parses the command line and sets up
//! logging. `daemon.rs` is the start-up file that builds every subsystem in order.

pub mod alerts;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod deadman;
pub mod devices;
pub mod fuzz;
pub mod health;
pub mod http;
pub mod media;
pub mod notify;
pub mod persist;
pub mod recording;
pub mod state;
pub mod supervisor;

//! Devices: what a USB microphone is (identity), what it is called (naming and the
//! persisted name ledger), what it can do (probe) and how it is captured (plan).
//!
//! Everything here is pure or reads files under a root prefix, so it is tested
//! against fixture trees; the udev watcher that feeds it lives at the edge.

pub mod asound;
pub mod discover;
#[cfg(test)]
pub mod fixture;
pub mod hwprobe;
pub mod identity;
pub mod ledger;
pub mod naming;
pub mod plan;
pub mod report;
pub mod scan;
pub mod watch;

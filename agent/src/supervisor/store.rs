//! The name ledger's writer: its own thread ("hark-store"), so that an fsync on
//! a slow SD card never holds up the supervisor (or the watchdog it answers).
//! Saves are coalesced: the thread writes the latest ledger it was given, and
//! a burst of changes (a hub with four mics) costs one or two writes.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::devices::ledger;
use crate::devices::naming::Ledger;

#[derive(Default)]
struct Slot {
    latest: Option<Ledger>,
    closing: bool,
}

pub struct Writer {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long `close` waits for the last write.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Writer {
    pub fn spawn(path: PathBuf) -> std::io::Result<Writer> {
        let slot: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
        let theirs = slot.clone();
        let thread = std::thread::Builder::new()
            .name("hark-store".into())
            .spawn(move || write_loop(&path, &theirs))?;
        Ok(Writer {
            slot,
            thread: Some(thread),
        })
    }

    /// Queues `ledger` to be written (replacing one not yet written).
    pub fn save(&self, ledger: Ledger) {
        let (lock, cv) = &*self.slot;
        lock.lock().unwrap_or_else(PoisonError::into_inner).latest = Some(ledger);
        cv.notify_one();
    }

    /// Writes what is queued and ends the thread, waiting at most `CLOSE_WAIT`
    /// (a disk that hangs longer is left to its thread).
    pub async fn close(&mut self) {
        {
            let (lock, cv) = &*self.slot;
            lock.lock().unwrap_or_else(PoisonError::into_inner).closing = true;
            cv.notify_one();
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        let join = tokio::task::spawn_blocking(move || thread.join());
        match tokio::time::timeout(CLOSE_WAIT, join).await {
            Ok(Ok(Ok(()))) => {}
            Ok(_) => tracing::error!("the name ledger writer failed"),
            Err(_) => tracing::error!(
                "the name ledger writer did not finish within {} s",
                CLOSE_WAIT.as_secs()
            ),
        }
    }
}

fn write_loop(path: &std::path::Path, slot: &(Mutex<Slot>, Condvar)) {
    let (lock, cv) = slot;
    loop {
        let next = {
            let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while s.latest.is_none() && !s.closing {
                s = cv.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            match s.latest.take() {
                Some(l) => l,
                None => return,
            }
        };
        if let Err(e) = ledger::save(path, &next) {
            tracing::error!(error = %e, "name ledger not saved");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_ledger_given_is_on_disk_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.json");
        let mut w = Writer::spawn(path.clone()).unwrap();
        let mut l = Ledger::default();
        for i in 0..50u64 {
            let id = crate::devices::identity::Identity {
                vendor_id: 1,
                product_id: 2,
                serial: Some(format!("S{i}")),
                manufacturer: None,
                product: None,
                port_path: "1-1".into(),
                id_path: None,
            };
            l.record(
                &id,
                &crate::devices::naming::Assignment {
                    name: format!("m{i}"),
                    reason: crate::devices::naming::Reason::New,
                    serial: Some(format!("S{i}")),
                },
                i,
            );
            w.save(l.clone());
        }
        w.close().await;
        let (back, problem) = ledger::load(&path, 0);
        assert!(problem.is_none());
        assert_eq!(back, l);
    }
}

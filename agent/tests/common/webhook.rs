//! A webhook receiver for the alert tests: `webhook.py` (Python's own HTTP
//! server, and TLS with a certificate given), its requests read back.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A webhook receiver, killed when dropped.
pub struct Receiver {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub fn start(mode: &str) -> Receiver {
        Self::start_tls(mode, None)
    }

    /// With `tls`: (certificate chain, key) PEM files.
    pub fn start_tls(mode: &str, tls: Option<(&Path, &Path)>) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let mut cmd = Command::new("python3");
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/common/webhook.py"
        ))
        .args(["--mode", mode, "--log"])
        .arg(&log)
        .stdout(Stdio::piped());
        if let Some((cert, key)) = tls {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let mut child = cmd.spawn().expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver's port");
        Receiver {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far: {t, path, headers, body}.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The JSON bodies of the requests to `path`.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r["path"] == path)
            .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
            .collect()
    }

    pub fn wait_for(&self, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        super::wait_for(Duration::from_secs(30), what, || {
            let r = self.requests();
            if ok(&r) {
                Ok(r)
            } else {
                Err(format!("{r:#?}"))
            }
        })
        .0
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

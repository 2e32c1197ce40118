//! The reboot edge: one narrow trait, a real implementation for logind and one
//! for `systemctl`, and a recorder for tests (a line per request in a file).

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RebootError {
    #[error("logind refused or could not be reached: {0}")]
    Logind(#[from] zbus::Error),
    #[error("`systemctl reboot` failed: {0}")]
    Systemctl(String),
    #[error("cannot record the reboot request in {path}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Asks the system to reboot. Returns once the request has been accepted (the
/// reboot itself happens after, asynchronously).
pub trait Rebooter {
    fn reboot(&self, reason: &str) -> impl Future<Output = Result<(), RebootError>>;
}

/// `org.freedesktop.login1.Manager.Reboot(false)` on the system bus: the clean
/// path (inhibitors, shutdown ordering). Needs root or a polkit grant.
pub struct Logind;

impl Rebooter for Logind {
    async fn reboot(&self, _reason: &str) -> Result<(), RebootError> {
        let conn = zbus::Connection::system().await?;
        conn.call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "Reboot",
            &(false,),
        )
        .await?;
        Ok(())
    }
}

/// `systemctl reboot`, for systems without logind.
pub struct Systemctl;

impl Rebooter for Systemctl {
    async fn reboot(&self, _reason: &str) -> Result<(), RebootError> {
        // A child process waited for: off the async runtime.
        super::off_runtime(|| {
            let out = std::process::Command::new("systemctl")
                .arg("reboot")
                .output()
                .map_err(|e| RebootError::Systemctl(e.to_string()))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(RebootError::Systemctl(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        })
        .await
    }
}

/// The test double: appends `reboot<TAB><reason>` to a file instead.
pub struct Record(pub PathBuf);

impl Rebooter for Record {
    async fn reboot(&self, reason: &str) -> Result<(), RebootError> {
        let path = self.0.clone();
        let line = format!("reboot\t{}", reason.replace(['\n', '\t'], " "));
        super::off_runtime(move || {
            let err = |source| RebootError::Record {
                path: path.clone(),
                source,
            };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(err)?;
            writeln!(f, "{line}").map_err(err)
        })
        .await
    }
}

//! Sending alerts: one thread per webhook ("hark-alert"), fed through a
//! bounded queue that the agent only ever `try_send`s into. A full queue drops
//! the alert (counted, logged, shown); a failed request is retried with a
//! capped backoff, a bounded number of times; each request has a timeout.
//! HTTP and TLS are ureq's and rustls' (ring, the Mozilla roots built in, or
//! the CA file configured).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::{Alert, Tracker, body, hostname};
use crate::config::{AlertConfig, AlertFormat};

/// Alerts waiting for one webhook; more are dropped (and counted).
pub const QUEUE: usize = 64;
/// The first retry waits this long; each next one twice as long, at most
/// [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The signature header: `sha256=` and the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "X-Hark-Signature";

/// What one webhook has done, for `/api/v1/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub name: String,
    /// The URL's host (its path and query may hold a token: never shown).
    pub host: String,
    pub sent: AtomicU64,
    /// Given up on: retries used up, refused (4xx), or not sendable.
    pub failed: AtomicU64,
    /// Not queued: the queue was full.
    pub dropped: AtomicU64,
    pub retries: AtomicU64,
    pub queued: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub last_sent: Mutex<Option<SystemTime>>,
}

/// [`Stats`] as the status endpoint shows them.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub name: String,
    pub host: String,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub retries: u64,
    pub queued: u64,
    pub last_error: Option<String>,
    pub last_sent: Option<String>,
}

impl Stats {
    pub fn view(&self) -> StatsView {
        StatsView {
            name: self.name.clone(),
            host: self.host.clone(),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            last_sent: lock(&self.last_sent).map(crate::recording::rfc3339),
        }
    }

    fn error(&self, e: String) {
        *lock(&self.last_error) = Some(e);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is one assignment: a poisoned lock holds a whole value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tells the sender threads to give up waiting (a backoff, a shutdown).
#[derive(Default)]
struct Stop {
    stopping: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    /// Waits `d`; true when told to stop meanwhile.
    fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stopping = lock(&self.stopping);
        while !*stopping {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            stopping = self
                .cv
                .wait_timeout(stopping, left)
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
        true
    }

    fn stop(&self) {
        *lock(&self.stopping) = true;
        self.cv.notify_all();
    }
}

/// One request's worth: written once, sent (and retried) as is.
struct Job {
    body: Vec<u8>,
    content_type: &'static str,
    event: String,
}

struct Target {
    tracker: Tracker,
    format: AlertFormat,
    tx: Option<SyncSender<Job>>,
    stats: Arc<Stats>,
    seq: u64,
}

/// Every webhook: its tracker (run by the caller, on each snapshot) and its
/// sender thread.
pub struct Alerts {
    targets: Vec<Target>,
    host: String,
    stop: Arc<Stop>,
}

impl Alerts {
    /// Starts a sender thread per webhook. A webhook that cannot be set up (its
    /// CA file unreadable) is kept with its error shown and counts its alerts
    /// as failed: the agent and the other webhooks run on.
    pub fn start(configs: &[AlertConfig]) -> Alerts {
        let stop = Arc::new(Stop::default());
        let host = hostname();
        let targets = configs
            .iter()
            .map(|c| {
                let stats = Arc::new(Stats {
                    name: c.name.clone(),
                    host: url_host(&c.url),
                    ..Stats::default()
                });
                let tx = match agent(c).and_then(|a| Ok((a, with_secret(c)?))) {
                    Ok((agent, c)) => spawn(c, agent, stats.clone(), stop.clone()),
                    Err(e) => {
                        tracing::error!(alert = %c.name, error = %e, "webhook not usable");
                        stats.error(e);
                        None
                    }
                };
                Target {
                    tracker: Tracker::new(c.events.clone(), c.remind),
                    format: c.format,
                    tx,
                    stats,
                    seq: 0,
                }
            })
            .collect();
        Alerts {
            targets,
            host,
            stop,
        }
    }

    pub fn stats(&self) -> Vec<Arc<Stats>> {
        self.targets.iter().map(|t| t.stats.clone()).collect()
    }

    /// Runs every tracker on `snap` and queues what they call for; never waits.
    pub fn feed(&mut self, snap: &crate::state::Snapshot, now: Instant, wall: SystemTime) {
        for t in &mut self.targets {
            for alert in t.tracker.update(snap, now, wall) {
                t.seq += 1;
                queue(t, &alert, &self.host);
            }
        }
    }
}

impl Drop for Alerts {
    /// The threads end once their queue is closed and the request in hand is
    /// done (a retry's backoff is cut short); nobody waits for them.
    fn drop(&mut self) {
        self.stop.stop();
        for t in &mut self.targets {
            t.tx = None;
        }
    }
}

fn queue(t: &mut Target, alert: &Alert, host: &str) {
    let (body, content_type) = body(alert, t.format, host, t.seq);
    let job = Job {
        body,
        content_type,
        event: alert.name.clone(),
    };
    let Some(tx) = &t.tx else {
        t.stats.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // Counted before it is queued: the sender may take it (and count it out)
    // before `try_send` returns.
    t.stats.queued.fetch_add(1, Ordering::Relaxed);
    match tx.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            t.stats.queued.fetch_sub(1, Ordering::Relaxed);
            let n = t.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The first, then every hundredth: a stuck webhook must not flood the log.
            if n == 1 || n.is_multiple_of(100) {
                tracing::warn!(alert = %t.stats.name, event = %alert.name, dropped = n, "alert queue full: alert dropped");
            }
        }
    }
}

/// One line for `harkd check-config`: where it posts (the host only), what,
/// how; and whether its files can be read now (as this user: the service may
/// run as another, so this is a warning, not an error).
pub fn describe(c: &AlertConfig) -> String {
    let events = if c.events.len() == crate::config::AlertEvent::ALL.len() {
        "every event".to_string()
    } else {
        c.events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let scheme = if c.url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let signed = if c.secret.is_some() || c.secret_file.is_some() {
        ", signed"
    } else {
        ""
    };
    let format = match c.format {
        AlertFormat::Json => "json",
        AlertFormat::Text => "text",
    };
    let mut line = format!(
        "alert {}: {scheme} to {}, {format}{signed}, {events}",
        c.name,
        url_host(&c.url)
    );
    if let Err(e) = agent(c).and_then(|_| with_secret(c)) {
        line.push_str(&format!(
            " (warning: {e}; harkd would run without this webhook)"
        ));
    }
    line
}

/// The webhook's config with its secret read from `secret_file`, if set.
fn with_secret(c: &AlertConfig) -> Result<AlertConfig, String> {
    let mut c = c.clone();
    if let Some(path) = &c.secret_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret_file {}: {e}", path.display()))?;
        let secret = text.strip_suffix('\n').unwrap_or(&text);
        let secret = secret.strip_suffix('\r').unwrap_or(secret);
        if secret.is_empty() {
            return Err(format!("secret_file {} is empty", path.display()));
        }
        c.secret = Some(secret.to_string());
    }
    Ok(c)
}

/// The HTTP agent for one webhook: its timeout, its trust roots, no redirects
/// (a POST redirected is a misconfigured URL, said as such).
fn agent(c: &AlertConfig) -> Result<ureq::Agent, String> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = &c.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(format!(
                "ca_file {} holds no PEM certificate",
                path.display()
            ));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(c.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(format!("harkd/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

fn spawn(
    config: AlertConfig,
    agent: ureq::Agent,
    stats: Arc<Stats>,
    stop: Arc<Stop>,
) -> Option<SyncSender<Job>> {
    let (tx, rx) = sync_channel(QUEUE);
    let name = config.name.clone();
    let spawned = std::thread::Builder::new()
        .name("hark-alert".into())
        .spawn(move || run(&config, &agent, &rx, &stats, &stop));
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::error!(alert = %name, error = %e, "cannot start the webhook's sender");
            None
        }
    }
}

fn run(config: &AlertConfig, agent: &ureq::Agent, rx: &Receiver<Job>, stats: &Stats, stop: &Stop) {
    while let Ok(job) = rx.recv() {
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        deliver(config, agent, &job, stats, stop);
    }
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Worth another try: no connection, a timeout, 5xx, 408, 429.
    Retry(String),
    /// Not worth one: the receiver refused this request (other 4xx, 3xx).
    Refused(String),
}

/// A response status, as [`Outcome`].
pub fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {status}")),
        _ => Outcome::Refused(format!("HTTP {status}")),
    }
}

/// The wait before retry `n` (from 0): 1 s, 2 s, 4 s... at most a minute.
pub fn backoff(n: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

fn deliver(config: &AlertConfig, agent: &ureq::Agent, job: &Job, stats: &Stats, stop: &Stop) {
    let signature = config
        .secret
        .as_ref()
        .map(|s| sign(s.as_bytes(), &job.body));
    let mut attempt = 0;
    loop {
        let result = attempt_once(config, agent, job, signature.as_deref());
        let reason = match result {
            Outcome::Sent => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                *lock(&stats.last_sent) = Some(SystemTime::now());
                tracing::debug!(alert = %config.name, event = %job.event, attempt, "alert sent");
                return;
            }
            Outcome::Refused(r) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(alert = %config.name, event = %job.event, reason = %r, "webhook refused the alert");
                stats.error(r);
                return;
            }
            Outcome::Retry(r) => r,
        };
        stats.error(reason.clone());
        if attempt >= config.retries {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(alert = %config.name, event = %job.event, reason = %reason, attempts = attempt + 1, "alert not delivered");
            return;
        }
        let wait = backoff(attempt);
        tracing::debug!(alert = %config.name, reason = %reason, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "alert retry");
        if stop.wait(wait) {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        attempt += 1;
    }
}

fn attempt_once(
    config: &AlertConfig,
    agent: &ureq::Agent,
    job: &Job,
    signature: Option<&str>,
) -> Outcome {
    let mut req = agent
        .post(&config.url)
        .header("Content-Type", job.content_type)
        .header("X-Hark-Event", &job.event);
    if let Some(sig) = signature {
        req = req.header(SIGNATURE_HEADER, &format!("sha256={sig}"));
    }
    if config.format == AlertFormat::Text {
        // ntfy shows it as the notification's title.
        req = req.header("Title", &format!("hark: {}", job.event));
    }
    match req.send(&job.body[..]) {
        Ok(resp) => outcome(resp.status().as_u16()),
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// Hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The host (and port) of a URL, for showing.
fn url_host(url: &str) -> String {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| {
            u.authority()
                .map(|a| a.as_str().rsplit('@').next().unwrap_or("").to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            sign(b"Jefe", b"what do ya want for nothing!"),
            sign(b"Jefe", b"what do ya want for nothing?")
        );
    }

    #[test]
    fn retries_back_off_to_a_cap_and_only_when_worth_it() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(6), BACKOFF_MAX);
        assert_eq!(backoff(40), BACKOFF_MAX);
        assert_eq!(outcome(204), Outcome::Sent);
        assert!(matches!(outcome(503), Outcome::Retry(_)));
        assert!(matches!(outcome(429), Outcome::Retry(_)));
        assert!(matches!(outcome(404), Outcome::Refused(_)));
        assert!(matches!(outcome(301), Outcome::Refused(_)));
    }

    #[test]
    fn a_url_is_shown_by_its_host_only() {
        assert_eq!(url_host("https://ntfy.sh/secret-topic"), "ntfy.sh");
        assert_eq!(
            url_host("http://user:pw@10.0.0.2:8080/h?t=x"),
            "10.0.0.2:8080"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_waits() {
        let (tx, rx) = sync_channel(1);
        let all = crate::config::AlertEvent::ALL.into_iter().collect();
        let mut t = Target {
            tracker: Tracker::new(all, Duration::ZERO),
            format: AlertFormat::Json,
            tx: Some(tx),
            stats: Arc::default(),
            seq: 0,
        };
        let alert = t
            .tracker
            .update(
                &crate::state::Snapshot::default(),
                Instant::now(),
                SystemTime::now(),
            )
            .remove(0);
        let started = Instant::now();
        for _ in 0..3 {
            queue(&mut t, &alert, "h");
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(t.stats.queued.load(Ordering::Relaxed), 1);
        assert_eq!(t.stats.dropped.load(Ordering::Relaxed), 2);
        // Its sender gone: dropped as well, not an error.
        drop(rx);
        queue(&mut t, &alert, "h");
        assert_eq!(t.stats.dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_stop_cuts_a_wait_short() {
        let stop = Arc::new(Stop::default());
        let s = stop.clone();
        let t = Instant::now();
        let waiter = std::thread::spawn(move || s.wait(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        stop.stop();
        assert!(waiter.join().unwrap());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!Stop::default().wait(Duration::from_millis(10)));
    }
}

//! What differs between two loaded configs, named by the keys a user writes in
//! hark.toml, so that a reload can say (and decide) what it changes.

use std::collections::{BTreeMap, BTreeSet};

use super::RebootPolicy as Policy;

use super::{
    Config, DeadmanConfig, DevicesConfig, HealthConfig, HttpConfig, RecordingConfig, RestartConfig,
    RtspConfig,
};

impl Config {
    /// The dotted keys whose effective values differ between `self` and `new`:
    ///
    /// - one key per setting of `[rtsp]`, `[http]`, `[health]`, `[restart]`,
    ///   `[devices]`, `[deadman]` and `[recording]`: `rtsp.port`, `http.listen`,
    ///   `health.level_interval_ms`, `devices.pin_card_id`, `deadman.max_reboots`...;
    ///   the `[rtsp.auth]` table as a whole: `rtsp.auth`;
    /// - `defaults`: the `[defaults]` table as a whole;
    /// - `device[NAME]`: a `[[device]]` rule added, removed or changed;
    /// - `stream[NAME]`: a `[[stream]]` added, removed or changed;
    /// - `alert[NAME]`: an `[[alert]]` added, removed or changed.
    ///
    /// Effective means with defaults applied: writing out a default value changes
    /// nothing, and a `[defaults]` change also names every stream and rule whose
    /// settings it changes. Only names are returned, never values (no password
    /// can end up in a log). Sections come in the order of configs/hark.toml;
    /// streams and rules by name. Identical configs give an empty list.
    pub fn changed_keys(&self, new: &Config) -> Vec<String> {
        // Destructured so that a new field cannot be forgotten here.
        let Config {
            path: _,
            rtsp,
            http,
            health,
            restart,
            streams,
            devices,
            deadman,
            recording,
            alerts,
        } = self;
        let mut d = Diff::default();
        d.rtsp(rtsp, &new.rtsp);
        d.http(http, &new.http);
        d.health(health, &new.health);
        d.restart(restart, &new.restart);
        d.devices(devices, &new.devices);
        d.deadman(deadman, &new.deadman);
        d.recording(recording, &new.recording);
        d.named(
            "stream",
            streams.iter().map(|s| (s.name.as_str(), s)),
            new.streams.iter().map(|s| (s.name.as_str(), s)),
        );
        d.named(
            "alert",
            alerts.iter().map(|a| (a.name.as_str(), a)),
            new.alerts.iter().map(|a| (a.name.as_str(), a)),
        );
        d.0
    }
}

#[derive(Default)]
struct Diff(Vec<String>);

impl Diff {
    fn key<T: PartialEq>(&mut self, key: &str, old: &T, new: &T) {
        if old != new {
            self.0.push(key.to_string());
        }
    }

    /// `table[NAME]` for each name present in only one of the two, or in both but different.
    fn named<'a, T: PartialEq + 'a>(
        &mut self,
        table: &str,
        old: impl Iterator<Item = (&'a str, &'a T)>,
        new: impl Iterator<Item = (&'a str, &'a T)>,
    ) {
        let old: BTreeMap<&str, &T> = old.collect();
        let new: BTreeMap<&str, &T> = new.collect();
        let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
        for name in names {
            if old.get(name) != new.get(name) {
                self.0.push(format!("{table}[{name}]"));
            }
        }
    }

    fn rtsp(&mut self, old: &RtspConfig, new: &RtspConfig) {
        let RtspConfig { bind, port, auth } = old;
        self.key("rtsp.bind", bind, &new.bind);
        self.key("rtsp.port", port, &new.port);
        self.key("rtsp.auth", auth, &new.auth);
    }

    fn http(&mut self, old: &HttpConfig, new: &HttpConfig) {
        let HttpConfig {
            listen,
            allow_non_loopback,
            auth,
            max_listeners,
            stun_server,
        } = old;
        self.key("http.listen", listen, &new.listen);
        self.key(
            "http.allow_non_loopback",
            allow_non_loopback,
            &new.allow_non_loopback,
        );
        self.key("http.auth", auth, &new.auth);
        self.key("http.max_listeners", max_listeners, &new.max_listeners);
        self.key("http.stun_server", stun_server, &new.stun_server);
    }

    fn health(&mut self, old: &HealthConfig, new: &HealthConfig) {
        let HealthConfig {
            stall_timeout,
            silence_threshold_dbfs,
            silence_after,
            level_interval,
        } = old;
        self.key("health.stall_timeout_ms", stall_timeout, &new.stall_timeout);
        self.key(
            "health.silence_threshold_dbfs",
            silence_threshold_dbfs,
            &new.silence_threshold_dbfs,
        );
        self.key("health.silence_after_s", silence_after, &new.silence_after);
        self.key(
            "health.level_interval_ms",
            level_interval,
            &new.level_interval,
        );
    }

    fn restart(&mut self, old: &RestartConfig, new: &RestartConfig) {
        let RestartConfig {
            initial,
            max,
            reset_after,
        } = old;
        self.key("restart.initial_ms", initial, &new.initial);
        self.key("restart.max_ms", max, &new.max);
        self.key("restart.reset_after_s", reset_after, &new.reset_after);
    }

    /// `defaults` first (the `[defaults]` table, which is what devices no rule
    /// names get), then `[devices]`, then the `[[device]]` rules.
    fn devices(&mut self, old: &DevicesConfig, new: &DevicesConfig) {
        let DevicesConfig {
            enabled,
            state_dir,
            alsa_device,
            pin_card_id,
            allow_non_usb,
            alsa_buffer,
            defaults,
            rules,
        } = old;
        self.key("defaults", defaults, &new.defaults);
        self.key("devices.enabled", enabled, &new.enabled);
        self.key("devices.state_dir", state_dir, &new.state_dir);
        self.key("devices.alsa_device", alsa_device, &new.alsa_device);
        self.key("devices.pin_card_id", pin_card_id, &new.pin_card_id);
        self.key("devices.allow_non_usb", allow_non_usb, &new.allow_non_usb);
        self.key("devices.alsa_buffer_ms", alsa_buffer, &new.alsa_buffer);
        self.named(
            "device",
            rules.iter().map(|r| (r.name.as_str(), r)),
            new.rules.iter().map(|r| (r.name.as_str(), r)),
        );
    }

    fn deadman(&mut self, old: &DeadmanConfig, new: &DeadmanConfig) {
        let DeadmanConfig {
            enabled,
            policy,
            unhealthy_after,
            good_after,
            reboot,
        } = old;
        let Policy {
            max_reboots,
            window_s,
            min_spacing_s,
        } = policy;
        let p = &new.policy;
        self.key("deadman.enabled", enabled, &new.enabled);
        self.key("deadman.max_reboots", max_reboots, &p.max_reboots);
        self.key("deadman.window_s", window_s, &p.window_s);
        self.key("deadman.min_spacing_s", min_spacing_s, &p.min_spacing_s);
        self.key(
            "deadman.unhealthy_after_s",
            unhealthy_after,
            &new.unhealthy_after,
        );
        self.key("deadman.good_after_s", good_after, &new.good_after);
        self.key("deadman.reboot", reboot, &new.reboot);
    }

    fn recording(&mut self, old: &RecordingConfig, new: &RecordingConfig) {
        let RecordingConfig {
            directory,
            segment,
            keep_days,
            max_bytes,
            min_free_bytes,
            trust_clock,
        } = old;
        self.key("recording.directory", directory, &new.directory);
        self.key("recording.segment_s", segment, &new.segment);
        self.key("recording.keep_days", keep_days, &new.keep_days);
        self.key("recording.max_bytes", max_bytes, &new.max_bytes);
        self.key(
            "recording.min_free_bytes",
            min_free_bytes,
            &new.min_free_bytes,
        );
        self.key("recording.trust_clock", trust_clock, &new.trust_clock);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

    const BASE: &str = r#"
[rtsp]
port = 8554
[rtsp.auth]
user = "hark"
password = "secret"
[http]
listen = "127.0.0.1:8780"
[health]
stall_timeout_ms = 3000
[restart]
initial_ms = 1000
[defaults]
codec = "opus"
[devices]
pin_card_id = true
[[device]]
name = "attic"
port = "1-1.3"
[deadman]
enabled = true
[[stream]]
name = "kitchen"
source = "tone"
[[stream]]
name = "garden"
source = "tone"
gain_db = 3.0
"#;

    fn load(text: &str) -> Config {
        Config::parse_bytes(Path::new("t.toml"), text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// BASE with each `(from, to)` replaced (each `from` must occur).
    fn edit(edits: &[(&str, &str)]) -> String {
        edits.iter().fold(BASE.to_string(), |text, (from, to)| {
            assert!(text.contains(from), "{from:?}");
            text.replacen(from, to, 1)
        })
    }

    /// (what, edits of BASE, the keys that changed).
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );

    const ALL_TONE: &[&str] = &[
        "defaults",
        "device[attic]",
        "stream[garden]",
        "stream[kitchen]",
    ];
    const KITCHEN: &str = "[[stream]]\nname = \"kitchen\"\nsource = \"tone\"\n";
    const ATTIC: &str = "[[device]]\nname = \"attic\"\nport = \"1-1.3\"\n";

    const CASES: &[Case] = &[
        ("nothing", &[], &[]),
        (
            "a comment, key order",
            &[
                ("[rtsp]\n", "# hi\n[rtsp]\n"),
                ("initial_ms = 1000", "max_ms = 60000\ninitial_ms = 1000"),
            ],
            &[],
        ),
        (
            "defaults written out",
            &[
                ("[rtsp]\n", "[rtsp]\nbind = \"0.0.0.0\"\n"),
                ("codec = \"opus\"", "codec = \"opus\"\ngain_db = 0.0"),
            ],
            &[],
        ),
        (
            "rtsp.port",
            &[("port = 8554", "port = 8555")],
            &["rtsp.port"],
        ),
        (
            "rtsp.bind",
            &[("[rtsp]\n", "[rtsp]\nbind = \"127.0.0.1\"\n")],
            &["rtsp.bind"],
        ),
        (
            "rtsp.auth password",
            &[("\"secret\"", "\"other\"")],
            &["rtsp.auth"],
        ),
        (
            "rtsp.auth removed",
            &[("[rtsp.auth]\nuser = \"hark\"\npassword = \"secret\"\n", "")],
            &["rtsp.auth"],
        ),
        ("http.listen", &[(":8780", ":8781")], &["http.listen"]),
        (
            "http.allow_non_loopback",
            &[("[http]\n", "[http]\nallow_non_loopback = true\n")],
            &["http.allow_non_loopback"],
        ),
        (
            "health.stall_timeout_ms",
            &[("= 3000", "= 4000")],
            &["health.stall_timeout_ms"],
        ),
        (
            "health.level_interval_ms",
            &[("[health]\n", "[health]\nlevel_interval_ms = 500\n")],
            &["health.level_interval_ms"],
        ),
        (
            "health.silence_*",
            &[(
                "[health]\n",
                "[health]\nsilence_threshold_dbfs = -60.0\nsilence_after_s = 10\n",
            )],
            &["health.silence_threshold_dbfs", "health.silence_after_s"],
        ),
        (
            "restart.*",
            &[(
                "initial_ms = 1000",
                "initial_ms = 500\nmax_ms = 1000\nreset_after_s = 5",
            )],
            &[
                "restart.initial_ms",
                "restart.max_ms",
                "restart.reset_after_s",
            ],
        ),
        (
            "defaults: all that take it",
            &[("codec = \"opus\"", "codec = \"l16\"")],
            ALL_TONE,
        ),
        (
            "defaults: not where overridden",
            &[("codec = \"opus\"", "gain_db = 1.0")],
            &["defaults", "device[attic]", "stream[kitchen]"],
        ),
        (
            "devices.*",
            &[(
                "pin_card_id = true",
                "pin_card_id = false\nenabled = false\nstate_dir = \"/tmp\"\nalsa_device = \"hw:{card}\"\nallow_non_usb = true\nalsa_buffer_ms = 100",
            )],
            &[
                "devices.enabled",
                "devices.state_dir",
                "devices.alsa_device",
                "devices.pin_card_id",
                "devices.allow_non_usb",
                "devices.alsa_buffer_ms",
                // The recordings live under the state directory unless placed elsewhere.
                "recording.directory",
            ],
        ),
        (
            "device rule changed",
            &[("\"1-1.3\"", "\"1-1.4\"")],
            &["device[attic]"],
        ),
        (
            "device rule added",
            &[(
                "[deadman]",
                "[[device]]\nname = \"meadow\"\nserial = \"A1\"\n[deadman]",
            )],
            &["device[meadow]"],
        ),
        (
            "device rule renamed",
            &[("\"attic\"", "\"loft\"")],
            &["device[attic]", "device[loft]"],
        ),
        ("device rule removed", &[(ATTIC, "")], &["device[attic]"]),
        (
            "deadman.*",
            &[(
                "enabled = true",
                "enabled = false\nmax_reboots = 1\nwindow_s = 3600\nmin_spacing_s = 60\nunhealthy_after_s = 60\ngood_after_s = 60\nreboot = \"systemctl\"",
            )],
            &[
                "deadman.enabled",
                "deadman.max_reboots",
                "deadman.window_s",
                "deadman.min_spacing_s",
                "deadman.unhealthy_after_s",
                "deadman.good_after_s",
                "deadman.reboot",
            ],
        ),
        (
            "stream changed",
            &[(
                "\"kitchen\"\nsource = \"tone\"",
                "\"kitchen\"\nsource = \"tone\"\ntone_hz = 880.0",
            )],
            &["stream[kitchen]"],
        ),
        (
            "stream added",
            &[(
                "gain_db = 3.0\n",
                "gain_db = 3.0\n[[stream]]\nname = \"porch\"\nsource = \"tone\"\n",
            )],
            &["stream[porch]"],
        ),
        ("stream removed", &[(KITCHEN, "")], &["stream[kitchen]"]),
        (
            "streams reordered",
            &[
                (KITCHEN, ""),
                (
                    "gain_db = 3.0\n",
                    "gain_db = 3.0\n[[stream]]\nname = \"kitchen\"\nsource = \"tone\"\n",
                ),
            ],
            &[],
        ),
        (
            "several, in file order",
            &[
                ("enabled = true", "enabled = false"),
                ("port = 8554", "port = 1"),
                ("gain_db = 3.0", "gain_db = 4.0"),
            ],
            &["rtsp.port", "deadman.enabled", "stream[garden]"],
        ),
    ];

    #[test]
    fn changed_keys_name_what_differs() {
        let old = load(BASE);
        for (what, edits, want) in CASES {
            let new = load(&edit(edits));
            assert_eq!(old.changed_keys(&new), *want, "{what}");
            // The same keys, whichever way round.
            let mut back = new.changed_keys(&old);
            let mut want = want.to_vec();
            back.sort();
            want.sort();
            assert_eq!(back, want, "{what} (reversed)");
        }
    }

    #[test]
    fn identical_configs_have_no_changes() {
        let shipped = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/hark.toml"));
        let a = Config::load(shipped).unwrap();
        let b = Config::parse_bytes(
            Path::new("/elsewhere/hark.toml"),
            &std::fs::read(shipped).unwrap(),
        )
        .unwrap();
        assert!(a.changed_keys(&b).is_empty());
        assert!(a.changed_keys(&a).is_empty());
    }
}

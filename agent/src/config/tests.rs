//! Parsing and validation, through `Config::parse_bytes` as the agent uses it.

use std::path::Path;
use std::time::Duration;

use super::schema::{default_http_listen, default_rtsp_bind};
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse_bytes(Path::new("t.toml"), text.as_bytes())
}

/// `pick` of each configured stream's encoding, in order.
fn per_stream<T>(c: &Config, pick: fn(&Encoding) -> T) -> Vec<T> {
    c.streams.iter().map(|s| pick(&s.encoding)).collect()
}

#[test]
fn minimal_stream_gets_documented_defaults() {
    let c = parse("[[stream]]\nname = \"a\"\nsource = \"tone\"\n").unwrap();
    assert_eq!(c.rtsp.port, 8554);
    assert_eq!(c.rtsp.bind, default_rtsp_bind());
    assert_eq!(c.http.listen, default_http_listen());
    assert_eq!(c.health.stall_timeout, Duration::from_secs(3));
    let s = &c.streams[0];
    assert_eq!(s.encoding.codec, Codec::Opus);
    assert_eq!(s.encoding.sample_rate, 48_000);
    assert_eq!(s.encoding.channels, 1);
    assert_eq!(s.encoding.bitrate, 64_000);
    assert_eq!(s.encoding.frame_ms, 60);
    assert_eq!(
        s.source,
        Source::Tone {
            freq_hz: 440.0,
            level_dbfs: -20.0
        }
    );
}

#[test]
fn alerts_have_documented_defaults_and_keep_their_secrets_out_of_logs() {
    let c = parse(
        "[[alert]]\nurl = \"https://ntfy.sh/attic-topic\"\nsecret = \"hunter2\"\n\n\
         [[alert]]\nname = \"lan\"\nurl = \"http://10.0.0.2/h\"\nformat = \"text\"\n\
         events = [\"device_removed\", \"stream_silent\"]\nremind_s = 0\nretries = 0\ntimeout_s = 3\n",
    )
    .unwrap();
    let a = &c.alerts[0];
    assert_eq!(a.name, "alert-1");
    assert_eq!(a.format, AlertFormat::Json);
    assert_eq!(a.events.len(), AlertEvent::ALL.len());
    assert_eq!(a.timeout, Duration::from_secs(10));
    assert_eq!(a.retries, 5);
    assert_eq!(a.remind, Duration::from_secs(6 * 3600));
    let b = &c.alerts[1];
    assert_eq!(b.name, "lan");
    assert_eq!(b.format, AlertFormat::Text);
    assert_eq!(
        b.events.iter().copied().collect::<Vec<_>>(),
        [AlertEvent::StreamSilent, AlertEvent::DeviceRemoved]
    );
    assert_eq!(
        (b.remind, b.retries, b.timeout),
        (Duration::ZERO, 0, Duration::from_secs(3))
    );
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("attic-topic"),
        "{shown}"
    );
    // A webhook changed is named by a reload, by name, and needs a restart.
    let mut d = parse("[[alert]]\nurl = \"https://ntfy.sh/other\"\n").unwrap();
    d.path = c.path.clone();
    assert!(c.changed_keys(&d).contains(&"alert[alert-1]".to_string()));
    assert!(c.changed_keys(&d).contains(&"alert[lan]".to_string()));
}

#[test]
fn record_is_layered_and_recording_has_documented_defaults() {
    let c = parse(
        "[defaults]\nrecord = true\n[devices]\nstate_dir = \"/s\"\n\n[[stream]]\nname = \"a\"\nsource = \"tone\"\n\n[[stream]]\nname = \"b\"\nsource = \"tone\"\nrecord = false\n",
    )
    .unwrap();
    assert!(c.streams[0].record);
    assert!(!c.streams[1].record);
    assert!(c.devices.defaults.record);
    assert_eq!(c.recording.directory, Path::new("/s/recordings"));
    assert_eq!(c.recording.segment, Duration::from_secs(600));
    assert_eq!(c.recording.keep_days, 30);
    assert_eq!(c.recording.max_bytes, 0);
    assert_eq!(c.recording.min_free_bytes, 256 * 1024 * 1024);
    assert_eq!(c.recording.trust_clock, TrustClock::Synced);
    let c = parse("[[stream]]\nname = \"a\"\nsource = \"tone\"\n").unwrap();
    assert!(!c.streams[0].record);
}

#[test]
fn stream_overrides_defaults() {
    let c = parse(
        "[defaults]\ncodec = \"l16\"\nsample_rate = 96000\n\n[[stream]]\nname = \"a\"\nsource = \"tone\"\n\n[[stream]]\nname = \"b\"\nsource = \"tone\"\ncodec = \"opus\"\nsample_rate = 48000\nbitrate = 32000\n",
    )
    .unwrap();
    assert_eq!(c.streams[0].encoding.codec, Codec::L16);
    assert_eq!(c.streams[0].encoding.sample_rate, 96_000);
    assert_eq!(c.streams[1].encoding.codec, Codec::Opus);
    assert_eq!(c.streams[1].encoding.bitrate, 32_000);
}

/// (text, key, line, part of the message).
const ERRORS: &[(&str, &str, usize, &str)] = &[
    ("[rtsp]\nport = 0\n", "rtsp.port", 2, "out of range"),
    (
        "[deadman]\nmax_reboots = 0\n",
        "deadman.max_reboots",
        2,
        "between 1 and 100",
    ),
    (
        "[deadman]\nwindow_s = 3600\nmin_spacing_s = 7200\n",
        "deadman.min_spacing_s",
        3,
        "not be longer than deadman.window_s",
    ),
    (
        "[deadman]\nreboot = \"kexec\"\n",
        "deadman.reboot",
        2,
        "unknown variant",
    ),
    (
        "[deadman]\nunhealthy_after_s = 0\n",
        "deadman.unhealthy_after_s",
        2,
        "between 1 and",
    ),
    ("[rtsp]\nport = 70000\n", "rtsp.port", 2, "out of range"),
    (
        "[recording]\nsegment_s = 5\n",
        "recording.segment_s",
        2,
        "between 10 and 86400",
    ),
    (
        "[recording]\ndirectory = \"rec\"\n",
        "recording.directory",
        2,
        "not an absolute path",
    ),
    (
        "[recording]\nmax_bytes = 1000\n",
        "recording.max_bytes",
        2,
        "cannot hold a segment",
    ),
    (
        "[recording]\ntrust_clock = \"ntp\"\n",
        "recording.trust_clock",
        2,
        "unknown variant",
    ),
    (
        "[[alert]]\nurl = \"ftp://example.org/x\"\n",
        "alert[0].url",
        2,
        "only http:// and https://",
    ),
    (
        "[[alert]]\nurl = \"https://a.example/x\"\nevents = [\"stream_silent\", \"sunrise\"]\n",
        "alert[0].events[1]",
        3,
        "unknown variant",
    ),
    (
        "[[alert]]\nurl = \"https://a.example/x\"\nremind_s = 10\n",
        "alert[0].remind_s",
        3,
        "at least 60",
    ),
    (
        "[[alert]]\nurl = \"https://a.example/x\"\nca_file = \"ca.pem\"\n",
        "alert[0].ca_file",
        3,
        "not an absolute path",
    ),
    (
        "[[alert]]\nurl = \"http://a.example/x\"\nca_file = \"/etc/hark/ca.pem\"\n",
        "alert[0].ca_file",
        3,
        "only https://",
    ),
    (
        "[http]\nlisten = \"0.0.0.0:8780\"\nallow_non_loopback = true\n",
        "http.listen",
        2,
        "need credentials",
    ),
    (
        "[http]\nstun_server = \"stun.example.org:3478\"\n",
        "http.stun_server",
        2,
        "not stun://host:port",
    ),
    (
        "[http]\nmax_listeners = 65\n",
        "http.max_listeners",
        2,
        "too many",
    ),
    (
        "[http.auth]\nuser = \"op\"\npassword = \"\"\n",
        "http.auth.password",
        3,
        "remove [http.auth]",
    ),
    (
        "[[alert]]\nname = \"x\"\nurl = \"http://a/\"\n[[alert]]\nname = \"x\"\nurl = \"http://b/\"\n",
        "alert[1].name",
        5,
        "duplicate alert name",
    ),
    (
        "[[alert]]\nurl = \"http://a/\"\nsecret = \"x\"\nsecret_file = \"/etc/hark/s\"\n",
        "alert[0].secret_file",
        4,
        "not both",
    ),
    (
        "[[alert]]\nurl = \"http://a/\"\nevents = []\n",
        "alert[0].events",
        3,
        "sends nothing",
    ),
    (
        "[[alert]]\nurl = \"http://a/\"\ntimeout_s = 0\n",
        "alert[0].timeout_s",
        3,
        "between 1 and 120",
    ),
    (
        "[[stream]]\nname = \"a\"\nsource = \"tone\"\nrecord = \"yes\"\n",
        "stream[0].record",
        4,
        "invalid type",
    ),
    ("[rtsp]\nbogus = 1\n", "rtsp.bogus", 2, "unknown field"),
    // Keys that are not bare are shown as TOML writes them.
    ("\"\" = 1\n", "\"\"", 1, "unknown field"),
    ("[rtsp]\n\"a b\" = 1\n", "rtsp.\"a b\"", 2, "unknown field"),
    ("[rtsp]\nport = \"x\"\n", "rtsp.port", 2, "invalid type"),
    (
        "[[stream]]\nname = \"a\"\nsource = \"tone\"\nbitrate = -5\n",
        "stream[0].bitrate",
        4,
        "",
    ),
    (
        "[[stream]]\nname = \"a\"\nsource = \"tone\"\n[[stream]]\nname = \"a\"\nsource = \"tone\"\n",
        "stream[1].name",
        5,
        "duplicate",
    ),
    (
        "[[stream]]\nname = \"a\"\nsource = \"tone\"\ncodec = \"flac\"\n",
        "stream[0].codec",
        4,
        "unknown variant",
    ),
    (
        "[[stream]]\nname = \"a\"\nsource = \"alsa\"\n",
        "stream[0].source",
        3,
        "needs device",
    ),
    (
        "[[stream]]\nname = \"a\"\nsource = \"tone\"\nsample_rate = 44100\n",
        "stream[0].sample_rate",
        4,
        "cannot encode",
    ),
    (
        "[defaults]\nbitrate = 1\n[[stream]]\nname = \"a\"\nsource = \"tone\"\n",
        "defaults.bitrate",
        2,
        "out of range",
    ),
    (
        "[[stream]]\nname = \"Bad Name\"\nsource = \"tone\"\n",
        "stream[0].name",
        2,
        "contains",
    ),
    (
        "[http]\nlisten = \"0.0.0.0:80\"\n",
        "http.listen",
        2,
        "loopback",
    ),
    ("a = [\n", "(syntax)", 1, "unclosed array"),
];

#[test]
fn errors_name_line_column_and_key() {
    for (text, key, line, msg) in ERRORS {
        let e = parse(text).unwrap_err();
        assert_eq!(&e.key, key, "{text:?}: {e}");
        assert_eq!(e.line, *line, "{text:?}: {e}");
        assert!(e.message.contains(msg), "{text:?}: {e}");
    }
}

#[test]
fn empty_and_binary_files_are_errors() {
    let e = parse("# only a comment\n\n").unwrap_err();
    assert!(e.message.contains("empty"), "{e}");
    let e = Config::parse_bytes(Path::new("t"), &[0x41, 0xff, 0xfe, 0x00]).unwrap_err();
    assert!(e.message.contains("not UTF-8"), "{e}");
    assert_eq!((e.line, e.col), (1, 2));
}

#[test]
fn password_is_not_printed() {
    let c = parse("[rtsp.auth]\nuser = \"u\"\npassword = \"hunter2\"\n").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn shipped_config_parses() {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/hark.toml"));
    let c = Config::load(p).unwrap();
    assert_eq!(c.streams[0].name, "test-tone");
    assert!(c.deadman.enabled);
}

#[test]
fn level_interval_is_at_most_half_the_stall_timeout() {
    // Exactly half is allowed.
    let c = parse("[health]\nstall_timeout_ms = 500\nlevel_interval_ms = 250\n").unwrap();
    assert_eq!(c.health.level_interval, Duration::from_millis(250));
    assert_eq!(c.health.stall_timeout, Duration::from_millis(500));

    // Too close: blamed on the interval, with both values.
    let e = parse("[health]\nstall_timeout_ms = 500\nlevel_interval_ms = 251\n").unwrap_err();
    assert_eq!(e.key, "health.level_interval_ms", "{e}");
    assert_eq!((e.line, e.col), (3, 21), "{e}");
    assert_eq!(
        e.message,
        "health.level_interval_ms = 251 must be at most half of health.stall_timeout_ms = 500 \
         (at most 250): a stall is detected from missing level readings"
    );

    // Only the timeout written: the default interval (250) does not fit under it,
    // and the key to change is the one in the file.
    let e = parse("[health]\nstall_timeout_ms = 400\n").unwrap_err();
    assert_eq!(e.key, "health.stall_timeout_ms", "{e}");
    assert_eq!(e.line, 2, "{e}");
    assert!(
        e.message.contains("= 250") && e.message.contains("= 400"),
        "{e}"
    );

    // The old rule (interval shorter than the timeout) is not enough any more.
    let e = parse("[health]\nstall_timeout_ms = 1000\nlevel_interval_ms = 900\n").unwrap_err();
    assert_eq!(e.key, "health.level_interval_ms", "{e}");
}

/// The same encoding mistake gives the same message in `[defaults]`, a `[[stream]]`
/// and a `[[device]]` rule, at the key where it is written.
#[test]
fn encoding_mistakes_read_the_same_in_every_table() {
    let mistakes: &[(&str, &str)] = &[
        (
            "sample_rate = 44100",
            "opus cannot encode 44100 Hz; it takes [8000, 12000, 16000, 24000, 48000] (use codec \"l16\" for other rates)",
        ),
        ("sample_rate = 1000", "must be between 8000 and 384000 Hz"),
        (
            "bitrate = 1",
            "bitrate 1 is out of range for opus: use 6000-510000 bits per second",
        ),
        ("channels = 0", "opus carries 1-2 channels, not 0"),
        ("channels = 3", "opus carries 1-2 channels, not 3"),
        ("gain_db = 41.0", "must be between -60 and 40 dB"),
        (
            "highpass_hz = 24000.0",
            "highpass_hz must be 0 (off) or below half the sample rate (24000 Hz), not 24000",
        ),
        (
            "highpass_hz = -1.0",
            "highpass_hz must be 0 (off) or below half the sample rate (24000 Hz), not -1",
        ),
        (
            "frame_ms = 30",
            "must be one of [10, 20, 40, 60] (Opus frame durations in ms), not 30",
        ),
    ];
    let tables: &[(&str, &str, usize)] = &[
        ("[defaults]\n", "defaults", 2),
        (
            "[[stream]]\nname = \"s\"\nsource = \"tone\"\n",
            "stream[0]",
            4,
        ),
        ("[[device]]\nname = \"d\"\nport = \"1-1\"\n", "device[0]", 4),
    ];
    for (line, message) in mistakes {
        let field = line.split(' ').next().unwrap();
        for (table, key, at_line) in tables {
            let text = format!("{table}{line}\n");
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key, format!("{key}.{field}"), "{text:?}: {e}");
            assert_eq!(e.line, *at_line, "{text:?}: {e}");
            assert_eq!(e.message, *message, "{text:?}: {e}");
        }
    }
}

/// A conflict between a table and `[defaults]` is blamed on the table's own key.
#[test]
fn encoding_conflicts_blame_the_more_specific_table() {
    let stream = "[[stream]]\nname = \"s\"\nsource = \"tone\"\n";
    let device = "[[device]]\nname = \"d\"\nport = \"1-1\"\n";
    let cases: &[(String, &str, &str)] = &[
        (
            format!("[defaults]\ncodec = \"l16\"\nsample_rate = 44100\n{stream}codec = \"opus\"\n"),
            "stream[0].codec",
            "opus cannot encode 44100 Hz",
        ),
        (
            format!("[defaults]\nbitrate = 400000\n{device}codec = \"aac\"\n"),
            "device[0].codec",
            "bitrate 400000 is out of range for aac",
        ),
        (
            format!("[defaults]\ncodec = \"l16\"\nchannels = 4\n{device}codec = \"mp3\"\n"),
            "device[0].codec",
            "mp3 carries 1-2 channels, not 4",
        ),
        (
            format!("[defaults]\nsample_rate = 16000\n{stream}highpass_hz = 9000.0\n"),
            "stream[0].highpass_hz",
            "below half the sample rate (8000 Hz), not 9000",
        ),
        (
            format!("[defaults]\nhighpass_hz = 9000.0\n{stream}sample_rate = 16000\n"),
            "stream[0].sample_rate",
            "below half the sample rate (8000 Hz), not 9000",
        ),
        (
            format!("[defaults]\ncodec = \"opus\"\n{stream}sample_rate = 44100\n"),
            "stream[0].sample_rate",
            "opus cannot encode 44100 Hz",
        ),
        (
            format!("{stream}codec = \"l16\"\nframe_ms = 20\n"),
            "stream[0].frame_ms",
            "frame_ms applies to opus only; l16 has frames of its own length",
        ),
        (
            format!("[defaults]\ncodec = \"aac\"\n{device}frame_ms = 20\n"),
            "device[0].frame_ms",
            "frame_ms applies to opus only; aac",
        ),
        (
            format!("{stream}bitrate = 256000\nframe_ms = 60\n"),
            "stream[0].frame_ms",
            "frame_ms 60 at 256000 bits per second makes packets of about 1920 bytes, \
             more than one network packet carries (1000): use frame_ms 20 or less",
        ),
        (
            format!("[defaults]\nframe_ms = 40\n{device}bitrate = 510000\n"),
            "device[0].bitrate",
            "use frame_ms 10 or less",
        ),
    ];
    for (text, key, msg) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(&e.key, key, "{text:?}: {e}");
        assert!(e.message.contains(msg), "{text:?}: {e}");
    }
}

/// `frame_ms` from `[defaults]` is for the Opus streams; a stream that picks
/// another codec does not use it, and is no mistake.
#[test]
fn frame_ms_from_defaults_reaches_opus_streams_and_spares_the_others() {
    let c = parse(
        "[defaults]\nframe_ms = 20\n\
         [[stream]]\nname = \"o\"\nsource = \"tone\"\n\
         [[stream]]\nname = \"p\"\nsource = \"tone\"\ncodec = \"l16\"\n\
         [[stream]]\nname = \"q\"\nsource = \"tone\"\nframe_ms = 40\n",
    )
    .unwrap();
    assert_eq!(
        per_stream(&c, |e| (e.codec, e.frame_ms)),
        [(Codec::Opus, 20), (Codec::L16, 20), (Codec::Opus, 40)]
    );
    assert_eq!(c.devices.defaults.frame_ms, Some(20));
}

/// Unset, `frame_ms` is 60 ms where a 60 ms frame fits in one network packet
/// at the stream's bit rate, else the longest that does.
#[test]
fn the_default_frame_fits_one_network_packet() {
    let c = parse(
        "[[stream]]\nname = \"a\"\nsource = \"tone\"\nchannels = 2\n\
         [[stream]]\nname = \"b\"\nsource = \"tone\"\nbitrate = 160000\n\
         [[stream]]\nname = \"c\"\nsource = \"tone\"\nbitrate = 256000\n\
         [[stream]]\nname = \"d\"\nsource = \"tone\"\nbitrate = 510000\n",
    )
    .unwrap();
    assert_eq!(
        per_stream(&c, |e| (e.bitrate, e.frame_ms)),
        [(128_000, 60), (160_000, 40), (256_000, 20), (510_000, 10)]
    );
}

#[test]
fn devices_and_rules_take_defaults() {
    let c = parse(
        "[defaults]\ncodec = \"l16\"\nsample_rate = 44100\ngain_db = 6.0\n\
         [[device]]\nname = \"d\"\nserial = \"X\"\ngain_db = -3.0\n",
    )
    .unwrap();
    let d = &c.devices.defaults;
    assert_eq!(
        (d.codec, d.sample_rate, d.gain_db),
        (Codec::L16, 44_100, 6.0)
    );
    assert_eq!((d.channels, d.bitrate), (None, None));
    let r = &c.devices.rules[0].settings;
    assert_eq!(
        (r.codec, r.sample_rate, r.gain_db),
        (Codec::L16, 44_100, -3.0)
    );
}

const TWO: &str =
    "[[stream]]\nname = \"a\"\nsource = \"tone\"\n[[stream]]\nname = \"b\"\nsource = \"tone\"\n";

#[test]
fn a_group_becomes_a_stream_with_its_members_and_channel_count() {
    let c = parse(&format!(
        "{TWO}[[group]]\nname = \"both\"\nmode = \"merge\"\nmembers = [\"b\", \"a\"]\ncodec = \"l16\"\nmember_channels = 2\n\
         [[group]]\nname = \"room\"\nmode = \"mix\"\nmembers = [\"a\", \"usb-mic\"]\nmember_gain_db = {{ a = -6.0 }}\n\
         [[group]]\nname = \"house\"\nmode = \"mix\"\nmembers = \"all\"\n"
    ))
    .unwrap();
    let names: Vec<&str> = c.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "both", "room", "house"]);
    let both = &c.streams[2];
    assert_eq!(both.encoding.channels, 4);
    let Source::Group(g) = &both.source else {
        panic!("{both:?}")
    };
    assert_eq!(g.mode, GroupMode::Merge);
    assert_eq!(g.member_channels, 2);
    assert!(g.has_member("a", false) && !g.has_member("c", true));
    let Source::Group(room) = &c.streams[3].source else {
        panic!()
    };
    assert_eq!(
        c.streams[3].encoding.channels, 2,
        "a mix is stereo unless told"
    );
    assert_eq!(
        room.members,
        Members::Listed(vec![
            GroupMember {
                name: "a".into(),
                gain_db: -6.0
            },
            GroupMember {
                name: "usb-mic".into(),
                gain_db: 0.0
            }
        ])
    );
    let Source::Group(house) = &c.streams[4].source else {
        panic!()
    };
    assert!(house.has_member("anything", true) && !house.has_member("a", false));
}

#[test]
fn bad_groups_are_errors_at_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[group]]\nname = \"a\"\nmode = \"mix\"\nmembers = [\"b\"]\n",
            "group[0].name",
            "must be unique",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"merge\"\nmembers = [\"a\", \"b\", \"a\"]\ncodec = \"l16\"\n",
            "group[0].members",
            "listed twice",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"merge\"\nmembers = \"all\"\n",
            "group[0].members",
            "for mix groups",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"mix\"\nmembers = \"some\"\n",
            "group[0].members",
            "not a list",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"merge\"\nmembers = [\"a\", \"b\"]\nchannels = 2\n",
            "group[0].channels",
            "member_channels",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"merge\"\nmembers = [\"a\", \"b\", \"c\"]\n",
            "group[0].members",
            "3 channels",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"mix\"\nmembers = [\"a\"]\nmember_gain_db = { b = 1.0 }\n",
            "group[0].member_gain_db",
            "not a member",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"mix\"\nmembers = [\"a\", \"h\"]\n[[group]]\nname = \"h\"\nmode = \"mix\"\nmembers = [\"a\"]\n",
            "group[0].members",
            "is a group",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"mix\"\nmembers = []\n",
            "group[0].members",
            "at least one",
        ),
        (
            "[[group]]\nname = \"g\"\nmode = \"blend\"\nmembers = [\"a\"]\n",
            "group[0].mode",
            "",
        ),
    ];
    for (group, key, msg) in cases {
        let text = format!("{TWO}{group}");
        let e = parse(&text).unwrap_err();
        assert_eq!(&e.key, key, "{text}\n{e}");
        assert!(e.message.contains(msg), "{text}\n{e}");
        assert!(e.line > 6, "{e}: the line is in the group table");
    }
    // A [[device]] rule may not take a group's name either.
    let e = parse(&format!(
        "{TWO}[[group]]\nname = \"g\"\nmode = \"mix\"\nmembers = [\"a\"]\n[[device]]\nname = \"g\"\nserial = \"x\"\n"
    ))
    .unwrap_err();
    assert!(e.message.contains("must be unique"), "{e}");
}

#[test]
fn the_endpoint_beyond_loopback_asks_for_the_rtsp_credentials_unless_given_its_own() {
    let rtsp = "[rtsp.auth]\nuser = \"mic\"\npassword = \"pw1\"\n";
    let wide = "[http]\nlisten = \"0.0.0.0:8780\"\nallow_non_loopback = true\n";
    let c = parse(&format!("{rtsp}{wide}")).unwrap();
    assert_eq!(c.http.auth, c.rtsp.auth);
    assert!(c.http.auth.is_some());
    let own = format!("{rtsp}{wide}[http.auth]\nuser = \"op\"\npassword = \"pw2\"\n");
    let c = parse(&own).unwrap();
    assert_eq!(c.http.auth.as_ref().map(|a| a.user.as_str()), Some("op"));
    // On loopback, no credentials unless [http.auth] asks for them.
    assert_eq!(parse(rtsp).unwrap().http.auth, None);
    assert_eq!(parse("[http]\n").unwrap().http.max_listeners, 8);
}

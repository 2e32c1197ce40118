#!/usr/bin/python3
"""harkd benchmark: `make bench`. Everything runs on loopback, in one run, on what is
usually a shared, noisy machine: every figure is given as median [min..max] over its
runs, and every comparison says whether the runs' ranges separate or overlap; per-rep
ratios (pairs measured back to back) also say how many are below 1.

Measures:
  - CPU per stream at N = 1, 4, 16, 32 streams, for
      harkd            N Opus 48 kHz stereo 128 kb/s tone streams, one BirdNET-style
                       RTSP reader each (ffmpeg -rtsp_transport tcp, decoding to
                       mono 48 kHz s16le); harkd's CPU, the readers' apart
      floor            N x gst-launch-1.0 audiotestsrc ! opusenc ! fakesink
    Every side encodes Opus frames of BENCH_FRAME_MS (60, harkd's default frame_ms).
      +2 handoffs      the floor with two queues (streaming-thread handoffs) and a
                       payloader: the thread structure harkd has per client (its
                       client queue, and gst-rtsp-server's TCP send thread)
      peer             N x ffmpeg -c:a libopus -f rtsp pushers into a relaying RTSP
                       server (scripts/record_server.py), and a BirdNET-style reader
                       per stream pulling from it; at N in BENCH_PEER_NS (1,4,16)
    End to end: harkd + its readers against pushers + relay + readers.
    Each rep measures the columns back to back, in an order rotated from rep to rep,
    and the ratios are taken per rep. After BENCH_REPS reps, an N whose harkd range
    still overlaps the floor's or the peer's gets more reps (harkd and that baseline),
    up to BENCH_MAX_REPS and within BENCH_CPU_BUDGET seconds for the whole table.
    Separate ranges can happen by chance: with no real difference, 3 values against
    3 separate with probability 1 in 10, 5 against 5 1 in 126; the output says which.
    Stopping as soon as they separate makes a chance separation somewhat likelier.
  - harkd resident memory with N streams and N clients
  - process start to first successful PLAY (warm GStreamer registry)
  - connect to first RTP packet on a running stream
  - RSS after 300 sessions (4 concurrent clients x 75) minus before
  - HTTP: /healthz and /metrics latency (p50/p99) under bounded load, and the CPU
    cost of a 1 s scrape with 16 streams (windows with and without, alternating)
  - devices, from the `--ignored` benchmark in agent/tests/devices.rs: an injected
    add event (synthetic udev event on a fixture sysfs tree; no device node is
    waited for) to PLAY, and 1,000 injected add/remove cycles (RSS, fds, threads).
    The real-kernel figure (QEMU, USB/IP mic, snd-usb-audio, udev) comes from
    `make hil` (hotplug-latency scenario); it is printed beside if that output was
    saved to target/bench/hil.log (or the file named by BENCH_HIL_LOG):
        mkdir -p target/bench; make hil HIL=hotplug-latency 2>&1 | tee target/bench/hil.log

Every process the benchmark starts for a CPU window is checked over that window: all
must be alive at its end, and every client (harkd's pull clients, the peers' pushers)
must have streamed at least 95 % of the window's duration in audio; the pull clients'
decoded PCM must be non-silent in every second of it. A failed check stops the
benchmark with exit status 1 and a message naming the client: a dead or stalled
client would lower the CPU it is charged to.

Knobs (environment): BENCH_REPS (3), BENCH_MAX_REPS (7), BENCH_WINDOW (8 s),
BENCH_CPU_BUDGET (540 s), BENCH_PEER_NS (1,4,16), BENCH_HIL_LOG (target/bench/hil.log),
BENCH_FRAME_MS (60: the Opus frame duration of every side, harkd's frame_ms).

Self-test of the client checks; it must fail (exit 1) naming the client:
    BENCH_SELFTEST_KILL_CLIENT=1 BENCH_REPS=1 BENCH_WINDOW=4 /usr/bin/python3 scripts/bench.py
kills (SIGKILL) harkd's first pull client halfway through the first window;
=stall stops it (SIGSTOP) instead; =pusher kills the peers' first pusher.

Results: printed, and in bench/results/bench-<time>.json and .md (a Markdown table
and everything printed) for a complete run, and target/bench/results.json and .md
(written on failure and for a self-test too, with "status": "failed").
bench/README.md says how to read them.
"""
import array
import http.client
import json
import math
import os
import signal
import statistics
import threading
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARKD = os.path.join(ROOT, "target/release/harkd")
PROBE = os.path.join(ROOT, "target/release/examples/rtsp_probe")
RECORD_SERVER = os.path.join(ROOT, "scripts/record_server.py")
TICK = os.sysconf("SC_CLK_TCK")
REPS = int(os.environ.get("BENCH_REPS", "3"))
MAX_REPS = max(REPS, int(os.environ.get("BENCH_MAX_REPS", "7")))
WINDOW = float(os.environ.get("BENCH_WINDOW", "8"))
CPU_BUDGET = float(os.environ.get("BENCH_CPU_BUDGET", "540"))
HIL_LOG = os.environ.get("BENCH_HIL_LOG", os.path.join(ROOT, "target/bench/hil.log"))
SELFTEST = os.environ.get("BENCH_SELFTEST_KILL_CLIENT", "")
FRAME_MS = int(os.environ.get("BENCH_FRAME_MS", "60"))
WARMUP = 2.0
PORT = 28554
PEER_PORT = 28555
HTTP_PORT = 28556
NS = (1, 4, 16, 32)
COLS = ("harkd", "floor", "handoffs", "peer")
# The peer stack (an ffmpeg encoder and an ffmpeg reader per stream, and a relay)
# at N = 32 would be 65 processes on a 2-core machine: saturated, so its figure
# would say nothing. Measured where it fits.
PEER_NS = tuple(int(x) for x in os.environ.get("BENCH_PEER_NS", "1,4,16").split(","))
COL_NAME = {"harkd": "harkd", "floor": "floor", "handoffs": "+2 handoffs", "peer": "peer"}
MIN_STREAMED = 0.95   # of the window's duration, in audio
SILENT_RMS = 100.0    # of 32767 (-50 dBFS); the tones are near 2,300
PCM_RATE = 48000
PCM_FRAME = 2         # s16le mono, as BirdNET reads it

out_lines = []
results = {}
selftest_fired = [False]


def say(s=""):
    print(s, flush=True)
    out_lines.append(s)


class ClientFailure(Exception):
    pass


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # fields 14 and 15 (utime, stime) are rest[11], rest[12]
    return int(rest[11]) + int(rest[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def switches(pids):
    """Context switches so far (voluntary and involuntary) of every thread of `pids`;
    a thread that ends between listing and reading is left out."""
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def packets_per_s(n):
    """RTP packets (Opus frames) per second that n streams make."""
    return n * 1000.0 / FRAME_MS


def cpu_percent(pids, window):
    """CPU used by `pids` over `window` seconds, in % of one core."""
    before = sum(ticks(p) for p in pids)
    t0 = time.monotonic()
    time.sleep(window)
    after = sum(ticks(p) for p in pids)
    return (after - before) / TICK / (time.monotonic() - t0) * 100.0


def cpu_groups(groups, window):
    """CPU in % of one core of each named group of processes over one window."""
    t0 = {k: sum(ticks(p) for p in pids) for k, pids in groups.items()}
    start = time.monotonic()
    time.sleep(window)
    took = time.monotonic() - start
    return {k: (sum(ticks(p) for p in pids) - t0[k]) / TICK / took * 100.0 for k, pids in groups.items()}


class Client:
    """A process started for a CPU window. kind "reader": ffmpeg decoding an RTSP
    stream to a PCM file; "pusher": ffmpeg pushing, with -progress; "load": checked
    only for being alive (harkd, the floor's encoders, the record server)."""

    def __init__(self, name, proc, kind, path=None, log=None):
        self.name, self.proc, self.kind, self.path, self.log = name, proc, kind, path, log
        self.spans = []   # (bytes at window start, bytes at window end), readers

    def streamed(self):
        """Seconds of audio streamed so far; None for a load process."""
        if self.kind == "reader":
            try:
                return os.path.getsize(self.path) / (PCM_FRAME * PCM_RATE)
            except FileNotFoundError:
                return 0.0
        if self.kind == "pusher":
            last = 0.0
            try:
                with open(self.path) as f:
                    for line in f:
                        if line.startswith("out_time_us=") and line[12:].strip().isdigit():
                            last = int(line[12:]) / 1e6
            except FileNotFoundError:
                pass
            return last
        return None

    def stderr_tail(self):
        if not self.log:
            return ""
        try:
            with open(self.log) as f:
                tail = f.read().strip().splitlines()[-2:]
        except OSError:
            return ""
        return f"; its stderr: {' | '.join(tail)}" if tail else ""


def start_reader(name, url, tmp):
    path = os.path.join(tmp, f"reader-{time.monotonic_ns()}.pcm")
    with open(path + ".log", "w") as log:
        proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
             "-i", url, "-vn", "-f", "s16le", "-ac", "1", "-ar", str(PCM_RATE),
             "-flush_packets", "1", "-y", path],
            stdout=subprocess.DEVNULL, stderr=log)
    return Client(f"{name} (ffmpeg pulling {url})", proc, "reader", path, path + ".log")


def start_pusher(name, i, url, tmp):
    path = os.path.join(tmp, f"pusher-{time.monotonic_ns()}.progress")
    with open(path + ".log", "w") as log:
        proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
             "-progress", path, "-stats_period", "0.1", "-re", "-f", "lavfi",
             "-i", f"sine=frequency={300 + 10 * i}:sample_rate=48000", "-ac", "2",
             # The frames of every other side, and GStreamer opusenc's bit-rate
             # mode (constrained VBR: a 60 ms frame of ffmpeg's plain VBR can
             # outgrow an RTP packet, which ffmpeg then refuses).
             "-c:a", "libopus", "-b:a", "128k", "-frame_duration", str(FRAME_MS),
             "-vbr", "constrained", "-f", "rtsp", url],
            stdout=subprocess.DEVNULL, stderr=log)
    return Client(f"{name} (ffmpeg pushing to {url})", proc, "pusher", path, path + ".log")


def rms_by_second(path, b0, b1):
    """RMS of each whole second (and a last part of at least 0.5 s) of s16le PCM
    between byte offsets b0 and b1, sampled every 5th value."""
    with open(path, "rb") as f:
        f.seek(b0)
        data = f.read(b1 - b0)
    a = array.array("h")
    a.frombytes(data[:len(data) // 2 * 2])
    if sys.byteorder == "big":
        a.byteswap()
    per_s = PCM_RATE
    out = []
    for k in range(0, len(a) - per_s // 2 + 1, per_s):
        chunk = a[k:k + per_s:5]
        out.append(math.sqrt(sum(x * x for x in chunk) / len(chunk)))
    return out


class Watch:
    """The processes of one measurement (label: "harkd N=4 rep 2"), checked over each
    window bracketed by begin() and end(); verify() after they are stopped checks the
    readers' audio and raises ClientFailure naming every failed one."""

    def __init__(self, label):
        self.label, self.clients, self.failures = label, [], []

    def add(self, c):
        self.clients.append(c)
        return c

    def procs(self):
        return [c.proc for c in self.clients]

    def wait_streaming(self, timeout=20.0):
        """Until every client has streamed some audio."""
        deadline = time.monotonic() + timeout
        while True:
            late = [c for c in self.clients if c.kind != "load" and not c.streamed() > 0]
            dead = [c for c in self.clients if c.proc.poll() is not None]
            if dead:
                raise ClientFailure(f"{self.label}: " + "; ".join(
                    f"{c.name}: exited (status {c.proc.returncode}) before streaming"
                    f"{c.stderr_tail()}" for c in dead))
            if not late:
                return
            if time.monotonic() > deadline:
                raise ClientFailure(f"{self.label}: " + "; ".join(
                    f"{c.name}: no audio within {timeout:.0f} s{c.stderr_tail()}" for c in late))
            time.sleep(0.05)

    def begin(self, span):
        self.start = {c: c.streamed() for c in self.clients}
        self.sizes = {c: os.path.getsize(c.path) // PCM_FRAME * PCM_FRAME
                      for c in self.clients if c.kind == "reader"}
        self.t0 = time.monotonic()
        if SELFTEST and not selftest_fired[0]:
            kind = "pusher" if SELFTEST == "pusher" else "reader"
            victim = next((c for c in self.clients if c.kind == kind), None)
            if victim is not None:
                selftest_fired[0] = True
                sig = signal.SIGSTOP if SELFTEST == "stall" else signal.SIGKILL
                say(f"SELF-TEST: {sig.name} to {self.label}: {victim.name} in {span / 2:.1f} s "
                    f"(mid-window); the benchmark must fail")
                t = threading.Timer(span / 2, victim.proc.send_signal, args=(sig,))
                t.daemon = True
                t.start()

    def end(self):
        span = time.monotonic() - self.t0
        for c in self.clients:
            got = c.streamed()
            if c.proc.poll() is not None:
                self.failures.append(f"{c.name}: exited (status {c.proc.returncode}) before the "
                                     f"end of the {span:.1f} s window{c.stderr_tail()}")
            elif got is not None and got - self.start[c] < MIN_STREAMED * span:
                self.failures.append(f"{c.name}: streamed {got - self.start[c]:.2f} s of audio in the "
                                     f"{span:.2f} s window (under {MIN_STREAMED:.0%}): stalled")
            if c.kind == "reader":
                c.spans.append((self.sizes[c], os.path.getsize(c.path) // PCM_FRAME * PCM_FRAME))

    def verify(self):
        if not self.failures:
            for c in self.clients:
                for b0, b1 in c.spans:
                    quiet = [f"{s}: {r:.0f}" for s, r in enumerate(rms_by_second(c.path, b0, b1))
                             if r < SILENT_RMS]
                    if quiet:
                        self.failures.append(f"{c.name}: silent (RMS under {SILENT_RMS:.0f}) in "
                                             f"second(s) of the window: {', '.join(quiet)}")
        for c in self.clients:
            for p in (c.path, c.log):
                if p and c.kind != "load" and os.path.exists(p):
                    os.unlink(p)
        if self.failures:
            raise ClientFailure(f"{self.label}: " + "; ".join(self.failures))


def harkd_config(n, port):
    lines = [f'[rtsp]\nbind = "127.0.0.1"\nport = {port}\n\n[http]\nlisten = "127.0.0.1:{HTTP_PORT}"\n']
    for i in range(n):
        lines.append(
            f'[[stream]]\nname = "s{i}"\nsource = "tone"\ntone_hz = {300 + 10 * i}.0\n'
            f'codec = "opus"\nchannels = 2\nbitrate = 128000\nframe_ms = {FRAME_MS}\n'
        )
    return "\n".join(lines)


def start_harkd(cfg_text, tmp):
    path = os.path.join(tmp, "bench.toml")
    with open(path, "w") as f:
        f.write(cfg_text)
    env = dict(os.environ, HARK_LOG="warn")
    return subprocess.Popen([HARKD, "run", "--config", path, "--bus", "none"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_play(url, timeout_ms=10000):
    r = subprocess.run([PROBE, "until-play", url, str(timeout_ms)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"no PLAY on {url}: {r.stderr}")
    return float(r.stdout)


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.send_signal(signal.SIGCONT)   # a stopped process (the stall self-test)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def harkd_with_clients(n, tmp, label):
    """harkd serving n streams with one pull client each, past the warm-up."""
    h = start_harkd(harkd_config(n, PORT), tmp)
    w = Watch(label)
    w.add(Client("harkd", h, "load"))
    try:
        for i in range(n):
            wait_play(f"rtsp://127.0.0.1:{PORT}/s{i}")
        for i in range(n):
            w.add(start_reader(f"client s{i}", f"rtsp://127.0.0.1:{PORT}/s{i}", tmp))
        w.wait_streaming()
        time.sleep(WARMUP)
    except BaseException:
        stop(w.procs()[1:] + [h])
        raise
    return h, w


def run_harkd(n, tmp, label):
    """harkd and its n BirdNET-style readers; returns (harkd CPU %, RSS KiB, readers
    CPU %, harkd's context switches per packet)."""
    h, w = harkd_with_clients(n, tmp, label)
    try:
        w.begin(WINDOW)
        cs, t = switches([h.pid]), time.monotonic()
        got = cpu_groups({"harkd": [h.pid], "readers": [p.pid for p in w.procs()[1:]]}, WINDOW)
        cs = (switches([h.pid]) - cs) / (time.monotonic() - t) / packets_per_s(n)
        w.end()
        rss = rss_kib(h.pid)
    finally:
        stop(w.procs()[1:] + [h])
    w.verify()
    return got["harkd"], rss, got["readers"], cs


def gst_encoder(i, handoffs):
    """The encode-only floor for stream i: audiotestsrc ! opusenc ! fakesink, with
    `handoffs` queues (a streaming-thread handoff each) and a payloader when > 0."""
    tail = ["fakesink"]
    if handoffs:
        tail = ["queue", "!", "rtpopuspay", "!"] + ["queue", "max-size-buffers=1", "!"] * (handoffs - 1) + tail
    return subprocess.Popen(
        ["gst-launch-1.0", "-q", "audiotestsrc", "is-live=true", f"freq={300 + 10 * i}", "!",
         "audio/x-raw,rate=48000,channels=2", "!", "opusenc", "bitrate=128000",
         f"frame-size={FRAME_MS}", "!"] + tail,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_floor(n, label, handoffs=0):
    w = Watch(label)
    for i in range(n):
        w.add(Client(f"encoder {i} (gst-launch-1.0 ... opusenc)", gst_encoder(i, handoffs), "load"))
    try:
        time.sleep(WARMUP)
        w.begin(WINDOW)
        pids = [p.pid for p in w.procs()]
        cs, t = switches(pids), time.monotonic()
        cpu = cpu_percent(pids, WINDOW)
        cs = (switches(pids) - cs) / (time.monotonic() - t) / packets_per_s(n)
        w.end()
    finally:
        stop(w.procs())
    w.verify()
    return cpu, cs


def run_peer(n, tmp, label):
    """ffmpeg pushers into the relay, and a BirdNET-style ffmpeg reader per stream
    pulling it back out; returns (pushers, relay, readers) CPU in %."""
    server = subprocess.Popen(["/usr/bin/python3", RECORD_SERVER, str(PEER_PORT), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    w = Watch(label)
    w.add(Client("relay", server, "load"))
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("relay server did not start")
        pushers = [w.add(start_pusher(f"pusher s{i}", i, f"rtsp://127.0.0.1:{PEER_PORT}/in/s{i}", tmp))
                   for i in range(n)]
        w.wait_streaming()
        readers = [w.add(start_reader(f"peer reader s{i}", f"rtsp://127.0.0.1:{PEER_PORT}/s{i}", tmp))
                   for i in range(n)]
        w.wait_streaming()
        time.sleep(WARMUP)
        groups = {"pushers": [c.proc.pid for c in pushers], "relay": [server.pid],
                  "readers": [c.proc.pid for c in readers]}
        w.begin(WINDOW)
        got = cpu_groups(groups, WINDOW)
        w.end()
    finally:
        stop(w.procs()[1:] + [server])
    w.verify()
    return got["pushers"], got["relay"], got["readers"]


def startup_to_play(tmp):
    cfg = os.path.join(tmp, "one.toml")
    with open(cfg, "w") as f:
        f.write(harkd_config(1, PORT))
    env = dict(os.environ, HARK_LOG="warn")
    t0 = time.monotonic()
    h = subprocess.Popen([HARKD, "run", "--config", cfg, "--bus", "none"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t1 = time.monotonic()
    try:
        probe_ms = wait_play(f"rtsp://127.0.0.1:{PORT}/s0")
        return probe_ms + (t1 - t0) * 1000.0
    finally:
        stop([h])


def churn_rss(tmp, sessions=300, parallel=4):
    h = start_harkd(harkd_config(1, PORT), tmp)
    try:
        url = f"rtsp://127.0.0.1:{PORT}/s0"
        wait_play(url)
        subprocess.run([PROBE, "churn", url, "5"], check=True, capture_output=True)
        time.sleep(1)
        before = rss_kib(h.pid)
        churners = [subprocess.Popen([PROBE, "churn", url, str(sessions // parallel)],
                                     stdout=subprocess.PIPE, text=True) for _ in range(parallel)]
        outs = [c.communicate()[0] for c in churners]
        if any(c.returncode != 0 for c in churners):
            raise RuntimeError(f"rtsp_probe churn failed: {[c.returncode for c in churners]}")
        time.sleep(1)
        after = rss_kib(h.pid)
        first = subprocess.run([PROBE, "first-packet", url, "20"], check=True,
                               capture_output=True, text=True)
        return before, after, sum(int(o) for o in outs), float(first.stdout)
    finally:
        stop([h])


def http_get(path):
    c = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=5)
    t = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, (time.perf_counter() - t) * 1000.0


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def http_bench(tmp):
    """With 16 streams and 16 clients: REPS rounds of latency under bounded load (8
    workers, 2000 requests), then REPS pairs of windows without and with a 1 s scrape
    (the order alternating), the clients checked over every window."""
    h, w = harkd_with_clients(16, tmp, "HTTP, harkd N=16")
    try:
        lat = {"/healthz": [], "/metrics": []}
        bad = [0]

        def worker(w_, rnd):
            for i in range(250):
                path = "/healthz" if (w_ + i) % 2 == 0 else "/metrics"
                status, ms = http_get(path)
                if status != 200:
                    bad[0] += 1
                rnd[path].append(ms)
        for _ in range(REPS):
            rnd = {p: [] for p in lat}
            threads = [threading.Thread(target=worker, args=(k, rnd)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for p, v in rnd.items():
                lat[p].append((statistics.median(v), pct(v, 0.99)))
        time.sleep(1)

        def scraped_window():
            stop_scraping = threading.Event()

            def scraper():
                while not stop_scraping.wait(1.0):
                    http_get("/metrics")
                    http_get("/api/v1/status")
            s = threading.Thread(target=scraper)
            s.start()
            try:
                return cpu_percent([h.pid], WINDOW)
            finally:
                stop_scraping.set()
                s.join()
        pairs = []
        for r in range(REPS):
            got = {}
            for kind in (("quiet", "scraped") if r % 2 == 0 else ("scraped", "quiet")):
                w.begin(WINDOW)
                got[kind] = cpu_percent([h.pid], WINDOW) if kind == "quiet" else scraped_window()
                w.end()
            pairs.append((got["quiet"], got["scraped"]))
    finally:
        stop(w.procs()[1:] + [h])
    w.verify()
    return lat, bad[0], pairs


def stats(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "runs": list(values)}


def spread(values, fmt="{:.2f}"):
    """median [min..max], or the one value."""
    if len(values) == 1:
        return fmt.format(values[0])
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))}..{fmt.format(max(values))}]")


def pairs_below(ratios):
    """How many per-rep ratios are below 1; when all or none, the chance of that with
    no real difference (each pair's order a coin toss): 2 / 2^n."""
    below, n = sum(1 for x in ratios if x < 1), len(ratios)
    if n > 1 and below in (0, n):
        return f"{below} of {n} pairs below 1, by chance alone 1 in {2 ** (n - 1)}"
    return f"{below} of {n} pairs below 1"


def verdict(a, b, an, bn):
    """Whether the ranges of a and b separate, with the chance of that when a and b
    come from one distribution (every order equally likely): 2 / C(len a + len b, len a).
    Returns ("separate" | "few" | "overlap", text); "few": separate, but more often
    than 1 in 10 by chance alone (fewer than 3 reps each)."""
    chance = math.comb(len(a) + len(b), len(a)) // 2
    if max(a) < min(b):
        rel = "lower"
    elif min(a) > max(b):
        rel = "higher"
    else:
        return "overlap", "overlap, not established"
    if chance < 10:
        return "few", (f"{an} {rel} than {bn} in every rep, but by chance alone 1 in {chance}: "
                       "too few reps, not established")
    return "separate", f"{an} {rel} than {bn} in every rep (by chance alone: 1 in {chance})"


def cpu_table(tmp):
    """CPU per stream for every N: REPS reps, then more where harkd's range overlaps
    a baseline's, within MAX_REPS and CPU_BUDGET."""
    t_start = time.monotonic()
    data = {n: [] for n in NS}
    cost = {n: {c: [] for c in COLS} for n in NS}

    def cols_of(n):
        return [c for c in COLS if c != "peer" or n in PEER_NS]

    def rep(n, cols):
        r = len(data[n])
        every = cols_of(n)
        order = [c for c in every[r % len(every):] + every[:r % len(every)] if c in cols]
        rec = {"rep": r + 1, "order": order}
        for col in order:
            label = f"{COL_NAME[col]} N={n} rep {r + 1}"
            t = time.monotonic()
            if col == "harkd":
                c, rss, readers, cs = run_harkd(n, tmp, label)
                rec.update(harkd=c / n, rss_kib=rss, harkd_readers=readers / n, harkd_cs=cs)
            elif col == "floor":
                c, cs = run_floor(n, label)
                rec.update(floor=c / n, floor_cs=cs)
            elif col == "handoffs":
                c, cs = run_floor(n, label, handoffs=2)
                rec.update(handoffs=c / n, handoffs_cs=cs)
            else:
                pushers, relay, readers = run_peer(n, tmp, label)
                rec.update(peer=(pushers + relay) / n, peer_pushers=pushers / n,
                           peer_relay=relay / n, peer_readers=readers / n)
            cost[n][col].append(time.monotonic() - t)
        if "harkd" in rec and "peer" in rec:
            rec["harkd_e2e"] = rec["harkd"] + rec["harkd_readers"]
            rec["peer_e2e"] = rec["peer"] + rec["peer_readers"]
        data[n].append(rec)

    def overlapping(n):
        # "+2 handoffs" is the explanation, expected to be close: no extra reps for it.
        h = [r["harkd"] for r in data[n]]
        return [c for c in cols_of(n)[1:] if c != "handoffs"
                and verdict(h, [r[c] for r in data[n] if c in r], "", "")[0] != "separate"]
    for _ in range(REPS):
        for n in NS:
            rep(n, cols_of(n))
    budget_stop = False
    while True:
        todo = [n for n in NS if len(data[n]) < MAX_REPS and overlapping(n)]
        ran = False
        for n in todo:
            cols = ["harkd"] + overlapping(n)
            est = sum(statistics.mean(cost[n][c]) for c in cols)
            if time.monotonic() - t_start + est > CPU_BUDGET:
                budget_stop = True
                continue
            rep(n, cols)
            ran = True
        if not ran:
            break
    return data, budget_stop, time.monotonic() - t_start


def report_cpu(data, budget_stop, took):
    say("CPU per stream (% of one core): what serves one Opus 48 kHz stereo 128 kb/s stream,")
    say("median [min..max] over reps. harkd: the agent (tone source, encoder, RTSP server);")
    say("floor: gst-launch audiotestsrc ! opusenc ! fakesink; +2 handoffs: the floor with two")
    say("queues (two streaming-thread handoffs per packet, harkd's structure with one client);")
    say("peer: an ffmpeg libopus pusher and the relay (scripts/record_server.py) per stream.")
    say(f"{'N':>3} {'reps':>4}  " + " ".join(f"{COL_NAME[c]:<20}" for c in COLS))
    out = {}
    for n in NS:
        recs = data[n]
        cols = {c: [r[c] for r in recs if c in r] for c in COLS}
        say(f"{n:>3} {len(recs):>4}  " + " ".join(f"{spread(cols[c]) if cols[c] else '-':<20}" for c in COLS))
        out[n] = {"reps": recs, **{c: stats(v) for c, v in cols.items() if v}}
    say()
    say("harkd against each baseline, per rep (the two measured back to back):")
    for n in NS:
        recs = data[n]
        h = [r["harkd"] for r in recs]
        for c in COLS[1:]:
            ratios = [r["harkd"] / r[c] for r in recs if c in r]
            if not ratios:
                continue
            kind, text = verdict(h, [r[c] for r in recs if c in r], "harkd", COL_NAME[c])
            goal = ""
            if c == "floor" and n >= 16:
                goal = (f"; goal 1.10 or less: {'met' if max(ratios) <= 1.10 else 'NOT met'} "
                        f"(worst rep {max(ratios):.3f})")
            say(f"  N={n:<2} harkd/{COL_NAME[c]:<12} {spread(ratios):<18} ({pairs_below(ratios)}); "
                f"ranges: {text}{goal}")
            out[n][f"harkd/{c}"] = {**stats(ratios), "ranges": kind, "verdict": text}
    say()
    say("Context switches per packet (voluntary and involuntary, every thread, over the same")
    say("windows; one Opus packet per stream every BENCH_FRAME_MS):")
    for n in NS:
        per = {c: [r[f"{c}_cs"] for r in data[n] if f"{c}_cs" in r] for c in ("harkd", "floor", "handoffs")}
        say(f"  N={n:<2} " + "  ".join(f"{COL_NAME[c]} {spread(v, '{:.1f}')}" for c, v in per.items() if v))
        out[n]["switches_per_packet"] = {c: stats(v) for c, v in per.items() if v}
    say()
    say("End to end, with a BirdNET-style reader per stream (ffmpeg -rtsp_transport tcp ... -ac 1")
    say("-ar 48000 -f s16le) on both sides; % of one core per stream:")
    for n in NS:
        recs = [r for r in data[n] if "harkd_e2e" in r]
        if not recs:
            continue
        e2e = [r["harkd_e2e"] / r["peer_e2e"] for r in recs]
        h, p = [r["harkd_e2e"] for r in recs], [r["peer_e2e"] for r in recs]
        kind, text = verdict(h, p, "harkd", "peer")
        say(f"  N={n:<2} harkd {spread([r['harkd'] for r in recs])} + readers "
            f"{spread([r['harkd_readers'] for r in recs])} = {spread(h)};  peer: pushers "
            f"{spread([r['peer_pushers'] for r in recs])} + relay {spread([r['peer_relay'] for r in recs])} "
            f"+ readers {spread([r['peer_readers'] for r in recs])} = {spread(p)};  "
            f"ratio {spread(e2e)} ({pairs_below(e2e)}); ranges: {text}")
        out[n]["end_to_end"] = {"harkd": stats(h), "peer": stats(p), "ratio": stats(e2e),
                                "ranges": kind, "verdict": text}
    if any(n not in PEER_NS for n in NS):
        say(f"  (peer not run at N = {', '.join(str(n) for n in NS if n not in PEER_NS)}: "
            f"{2 * max(NS) + 1} processes would saturate this machine's {os.cpu_count()} cores)")
    say()
    say(f"CPU table: {took:.0f} s; reps {REPS} each, then more (up to {MAX_REPS}) where a "
        f"comparison's ranges overlapped" + ("; stopped by the time budget "
                                            f"(BENCH_CPU_BUDGET={CPU_BUDGET:.0f} s)" if budget_stop else ""))
    rss = {n: [r["rss_kib"] / 1024 for r in data[n] if "rss_kib" in r] for n in NS}
    say("harkd RSS with N streams and N clients: " + "; ".join(
        f"N={n} {spread(v, '{:.1f}')} MiB" for n, v in rss.items()))
    results["cpu_per_stream_percent"] = out
    results["cpu_table_seconds"] = took
    results["cpu_table_stopped_by_budget"] = budget_stop
    results["rss_mib"] = {n: stats(v) for n, v in rss.items()}


def hil_figure():
    """The last hotplug-latency summary in a saved `make hil` output, if any."""
    try:
        with open(HIL_LOG, errors="replace") as f:
            lines = [l.strip() for l in f if "hil: hotplug latency, add uevent -> PLAY answered" in l]
    except OSError:
        return None
    if not lines:
        return None
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(HIL_LOG)))
    return lines[-1].split("PLAY answered, ", 1)[-1], when


def say_hil(dev):
    hil = hil_figure()
    if hil:
        path = os.path.relpath(HIL_LOG, ROOT) if HIL_LOG.startswith(ROOT + "/") else HIL_LOG
        say(f"  beside it, real kernel add uevent to PLAY (QEMU, USB/IP mic, snd-usb-audio, udev), "
            f"from `make hil` hotplug-latency, not this run ({path}, {hil[1]}): {hil[0]}")
        dev["hil_add_uevent_to_play"] = {"text": hil[0], "file": HIL_LOG, "modified": hil[1]}
    else:
        say("  beside it, real kernel add uevent to PLAY (QEMU, USB/IP mic, snd-usb-audio, udev): "
            "not part of this run; it comes from `make hil` (hotplug-latency scenario; figures in "
            "hardware-tests/README.md, Numbers); `mkdir -p target/bench; make hil HIL=hotplug-latency "
            "2>&1 | tee target/bench/hil.log` saves it for printing here")
        dev["hil_add_uevent_to_play"] = None


def devices_bench():
    r = subprocess.run(
        ["cargo", "test", "--release", "--locked", "--test", "devices", "bench", "--",
         "--ignored", "--nocapture"],
        cwd=ROOT, capture_output=True, text=True)
    bench_lines = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith("BENCH ")]
    dev = results["devices"] = {"source": "agent/tests/devices.rs bench_device_add_to_play_and_cycles",
                                "lines": bench_lines}
    failed = r.returncode != 0 or not bench_lines
    if failed:
        say(f"device benchmark failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    for line in bench_lines:
        text = line[len("BENCH "):]
        if text.startswith("add event to PLAY: "):
            text = ("injected add event (fixture sysfs tree, synthetic udev event, no device-node "
                    "wait) to PLAY: " + text[len("add event to PLAY: "):])
            dev["injected_add_to_play"] = text
            say(text)
            say_hil(dev)
            continue
        if "add/remove cycles" in text:
            text = text.replace("add/remove cycles", "injected add/remove cycles (fixture tree)", 1)
            dev["injected_cycles"] = text
        say(text)
    if "hil_add_uevent_to_play" not in dev:
        say_hil(dev)
    return not failed


def markdown():
    """The run as Markdown: the CPU tables, then everything printed."""
    cpu = results.get("cpu_per_stream_percent", {})
    md = [f"# harkd benchmark, {results.get('time', '?')}", "",
          f"{results.get('cores')} cores; {results.get('reps')}-{results.get('max_reps')} reps of "
          f"{results.get('window_s'):g} s windows; status: {results.get('status')}. Figures are "
          "median [min..max] over reps; `bench/README.md` says how to read them.", ""]
    if cpu:
        md += ["## CPU per stream (% of one core)", "",
               "| N | reps | harkd | floor | +2 handoffs | peer (pusher + relay) | harkd/floor "
               "| harkd/+2 handoffs | harkd/peer |",
               "| ---: | ---: | --- | --- | --- | --- | --- | --- | --- |"]
        for n, row in cpu.items():
            def cell(k):
                v = row.get(k)
                return (f"{v['median']:.2f} [{v['min']:.2f}..{v['max']:.2f}]" if len(v["runs"]) > 1
                        else f"{v['median']:.2f}") if v else "-"
            md.append(f"| {n} | {len(row['reps'])} | {cell('harkd')} | {cell('floor')} | {cell('handoffs')} | "
                      f"{cell('peer')} | {cell('harkd/floor')} | {cell('harkd/handoffs')} | {cell('harkd/peer')} |")
        sw = [(n, row["switches_per_packet"]) for n, row in cpu.items() if row.get("switches_per_packet")]
        if sw:
            md += ["", "## Context switches per packet (every thread, voluntary and involuntary)", "",
                   "| N | harkd | floor | +2 handoffs |", "| ---: | --- | --- | --- |"]
            for n, row in sw:
                md.append(f"| {n} | " + " | ".join(
                    f"{row[c]['median']:.1f} [{row[c]['min']:.1f}..{row[c]['max']:.1f}]" if c in row else "-"
                    for c in ("harkd", "floor", "handoffs")) + " |")
        e2e = [(n, row["end_to_end"]) for n, row in cpu.items() if "end_to_end" in row]
        if e2e:
            md += ["", "## End to end, a BirdNET-style reader per stream on both sides", "",
                   "| N | harkd + readers | peer: pushers + relay + readers | ratio |", "| ---: | --- | --- | --- |"]
            for n, e in e2e:
                md.append(f"| {n} | {e['harkd']['median']:.2f} | {e['peer']['median']:.2f} | "
                          f"{e['ratio']['median']:.2f} [{e['ratio']['min']:.2f}..{e['ratio']['max']:.2f}] |")
    md += ["", "## Everything the run printed", "", "```", *out_lines, "```", ""]
    return "\n".join(md)


def write_results(status):
    results["status"] = status
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    text = json.dumps(results, indent=1) + "\n"
    md = markdown()
    # Only complete runs go to bench/results/, where they are kept (and committed
    # when quoted); a failed run or a self-test stays under target/.
    keep = status == "ok" and not SELFTEST
    bases = [os.path.join(ROOT, "target/bench/results")]
    if keep:
        bases.insert(0, os.path.join(out, f"bench-{stamp}"))
    for base in bases:
        with open(base + ".json", "w") as f:
            f.write(text)
        with open(base + ".md", "w") as f:
            f.write(md)
    print(f"\nwritten to {'bench/results/bench-' + stamp + '.json and .md (and ' if keep else '('}"
          "target/bench/results.json and .md)")


def main():
    for exe in (HARKD, PROBE):
        if not os.path.exists(exe):
            sys.exit(f"{exe} missing: run `make bench` (it builds first)")
    t_run = time.monotonic()
    say(f"# harkd benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}  ({os.cpu_count()} cores, "
        f"{REPS}-{MAX_REPS} reps x {WINDOW:g} s windows; Opus frames of {FRAME_MS} ms; "
        "median [min..max])")
    results.update(time=time.strftime("%Y-%m-%dT%H:%M:%S"), cores=os.cpu_count(), reps=REPS,
                   max_reps=MAX_REPS, window_s=WINDOW, frame_ms=FRAME_MS, selftest=SELFTEST or None)
    took = results["section_seconds"] = {}
    mark = [time.monotonic()]

    def lap(name):
        now = time.monotonic()
        took[name] = round(now - mark[0], 1)
        mark[0] = now
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Warm the GStreamer registry so start-up numbers are the warm case.
            subprocess.run(["gst-inspect-1.0", "opusenc"], capture_output=True)
            say()
            report_cpu(*cpu_table(tmp))
            lap("cpu table")
            starts = [startup_to_play(tmp) for _ in range(REPS)]
            lap("start-up")
            say(f"process start to first PLAY (warm registry): {spread(starts, '{:.1f}')} ms")
            runs = [churn_rss(tmp) for _ in range(REPS)]
            lap("churn")
            firsts = [r[3] for r in runs]
            say(f"connect to first RTP packet, running stream (median of 20 per run): "
                f"{spread(firsts, '{:.1f}')} ms")
            lat, bad, pairs = http_bench(tmp)
            lap("http")
            for path, v in lat.items():
                say(f"HTTP {path} under 8 concurrent workers (16 streams playing), {REPS} rounds of "
                    f"1000: p50 {spread([x[0] for x in v])} ms, p99 {spread([x[1] for x in v])} ms")
            say(f"HTTP errors among {2000 * REPS} requests: {bad}")
            quiet, scraped = [p[0] for p in pairs], [p[1] for p in pairs]
            shares = [(s - q) / s * 100 for q, s in pairs]
            kind, text = verdict(scraped, quiet, "with scrapes", "without")
            say(f"harkd CPU, 16 streams + clients, {WINDOW:g} s windows: {spread(quiet)} % without "
                f"scrapes, {spread(scraped)} % with a 1 s /metrics + /api/v1/status scrape; "
                f"control plane share per pair {spread(shares, '{:.1f}')} % (ranges: {text})")
            deltas = [r[1] - r[0] for r in runs]
            fails = sum(r[2] for r in runs)
            say(f"RSS after 300 sessions (4 concurrent x 75) minus before: {spread(deltas, '{:.0f}')} KiB "
                f"(failed sessions: {fails})")
            results.update(
                startup_to_play_ms=stats(starts), connect_to_first_rtp_ms=stats(firsts),
                http_latency_ms={p: {"p50": stats([x[0] for x in v]), "p99": stats([x[1] for x in v])}
                                 for p, v in lat.items()},
                http_errors=bad,
                scrape_cpu_percent={"without": stats(quiet), "with": stats(scraped),
                                    "share_percent": stats(shares), "ranges": kind, "verdict": text},
                churn_rss_delta_kib=stats(deltas), churn_failed_sessions=fails)
        # Built first, so that the laps below tell building from measuring.
        subprocess.run(["cargo", "test", "--release", "--locked", "--test", "devices", "--no-run"],
                       cwd=ROOT, capture_output=True)
        lap("devices test build")
        ok = devices_bench()
        lap("devices")
    except ClientFailure as e:
        say()
        say(f"BENCHMARK FAILED: a process failed its check, so the figure it belongs to would "
            f"be wrong. {e}")
        results["failure"] = str(e)
        write_results("failed")
        sys.exit(1)
    results["run_seconds"] = time.monotonic() - t_run
    say(f"\nrun time {results['run_seconds']:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()) + ")")
    write_results("ok" if ok else "failed")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

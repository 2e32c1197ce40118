#!/usr/bin/python3
"""harkd benchmark: `make bench`. Everything runs on loopback, in one run, so the
ratios compare like with like on a shared, noisy machine.

Measures (median of REPS runs each):
  - CPU per stream at N = 1, 4, 16 streams, one client each, for
      harkd            N Opus 48 kHz stereo 128 kb/s tone streams, N RTSP clients
      floor            N x gst-launch-1.0 audiotestsrc ! opusenc ! fakesink
      ffmpeg+server    N x ffmpeg -c:a libopus -f rtsp pushers into a record-mode
                       RTSP server (the peers' approach; the server is counted)
  - harkd resident memory at N = 16 with 16 clients
  - process start to first successful PLAY (warm GStreamer registry)
  - connect to first RTP packet on a running stream
  - RSS after 300 sessions minus before
  - HTTP: /healthz and /metrics latency (p50/p99) under bounded load, and the
    CPU cost of a 1 s scrape with 16 streams relative to the agent's total
  - devices: add event to PLAY, and 1,000 add/remove cycles (RSS, fds, threads),
    from the `--ignored` benchmark in agent/tests/devices.rs

Results: bench-results/bench-<time>.txt (and printed).
"""
import http.client
import os
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
WINDOW = float(os.environ.get("BENCH_WINDOW", "10"))
WARMUP = 3.0
PORT = 28554
PEER_PORT = 28555
HTTP_PORT = 28556

out_lines = []


def say(s=""):
    print(s, flush=True)
    out_lines.append(s)


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


def cpu_percent(pids, window):
    """CPU used by `pids` over `window` seconds, in % of one core."""
    before = sum(ticks(p) for p in pids)
    t0 = time.monotonic()
    time.sleep(window)
    after = sum(ticks(p) for p in pids)
    return (after - before) / TICK / (time.monotonic() - t0) * 100.0


def harkd_config(n, port):
    lines = [f'[rtsp]\nbind = "127.0.0.1"\nport = {port}\n\n[http]\nlisten = "127.0.0.1:{HTTP_PORT}"\n']
    for i in range(n):
        lines.append(
            f'[[stream]]\nname = "s{i}"\nsource = "tone"\ntone_hz = {300 + 10 * i}.0\n'
            'codec = "opus"\nchannels = 2\nbitrate = 128000\n'
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
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_harkd(n, tmp):
    h = start_harkd(harkd_config(n, PORT), tmp)
    clients = []
    try:
        for i in range(n):
            wait_play(f"rtsp://127.0.0.1:{PORT}/s{i}")
        hold = int(WARMUP + WINDOW + 5)
        clients = [subprocess.Popen([PROBE, "hold", f"rtsp://127.0.0.1:{PORT}/s{i}", str(hold)],
                                    stdout=subprocess.DEVNULL) for i in range(n)]
        time.sleep(WARMUP)
        cpu = cpu_percent([h.pid], WINDOW)
        return cpu, rss_kib(h.pid)
    finally:
        stop(clients + [h])


def run_floor(n):
    procs = [subprocess.Popen(
        ["gst-launch-1.0", "-q", "audiotestsrc", "is-live=true", f"freq={300 + 10 * i}", "!",
         "audio/x-raw,rate=48000,channels=2", "!", "opusenc", "bitrate=128000", "!", "fakesink"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]
    try:
        time.sleep(WARMUP)
        return cpu_percent([p.pid for p in procs], WINDOW)
    finally:
        stop(procs)


def run_peer(n):
    server = subprocess.Popen(["/usr/bin/python3", RECORD_SERVER, str(PEER_PORT), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pushers = []
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("record server did not start")
        pushers = [subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
             "-i", f"sine=frequency={300 + 10 * i}:sample_rate=48000", "-ac", "2",
             "-c:a", "libopus", "-b:a", "128k", "-f", "rtsp", f"rtsp://127.0.0.1:{PEER_PORT}/s{i}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]
        time.sleep(WARMUP)
        dead = [p for p in pushers if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{len(dead)} ffmpeg pushers exited")
        return cpu_percent([server.pid] + [p.pid for p in pushers], WINDOW)
    finally:
        stop(pushers + [server])


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


def churn_rss(tmp):
    h = start_harkd(harkd_config(1, PORT), tmp)
    try:
        url = f"rtsp://127.0.0.1:{PORT}/s0"
        wait_play(url)
        subprocess.run([PROBE, "churn", url, "5"], check=True, capture_output=True)
        time.sleep(1)
        before = rss_kib(h.pid)
        r = subprocess.run([PROBE, "churn", url, "300"], check=True, capture_output=True, text=True)
        time.sleep(1)
        after = rss_kib(h.pid)
        first = subprocess.run([PROBE, "first-packet", url, "20"], check=True,
                               capture_output=True, text=True)
        return before, after, int(r.stdout), float(first.stdout)
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
    """Latency under bounded load (8 workers, 2000 requests) with 16 streams and
    16 clients, then the CPU of a 1 s scrape against no scrape."""
    h = start_harkd(harkd_config(16, PORT), tmp)
    clients = []
    try:
        for i in range(16):
            wait_play(f"rtsp://127.0.0.1:{PORT}/s{i}")
        hold = int(2 * WINDOW + 40)
        clients = [subprocess.Popen([PROBE, "hold", f"rtsp://127.0.0.1:{PORT}/s{i}", str(hold)],
                                    stdout=subprocess.DEVNULL) for i in range(16)]
        time.sleep(WARMUP)
        lat = {"/healthz": [], "/metrics": []}
        bad = [0]

        def worker(w):
            for i in range(250):
                path = "/healthz" if (w + i) % 2 == 0 else "/metrics"
                status, ms = http_get(path)
                if status != 200:
                    bad[0] += 1
                lat[path].append(ms)
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = {p: (statistics.median(v), pct(v, 0.99)) for p, v in lat.items()}
        time.sleep(1)
        # CPU with no scrapes, then with one /metrics + /api/v1/status per second.
        quiet = cpu_percent([h.pid], 2 * WINDOW)
        stop_scraping = threading.Event()

        def scraper():
            while not stop_scraping.wait(1.0):
                http_get("/metrics")
                http_get("/api/v1/status")
        s = threading.Thread(target=scraper)
        s.start()
        scraped = cpu_percent([h.pid], 2 * WINDOW)
        stop_scraping.set()
        s.join()
        return out, bad[0], quiet, scraped
    finally:
        stop(clients + [h])


def main():
    for exe in (HARKD, PROBE):
        if not os.path.exists(exe):
            sys.exit(f"{exe} missing: run `make bench` (it builds first)")
    say(f"# harkd benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}  ({os.cpu_count()} cores, "
        f"{REPS} reps x {WINDOW:.0f} s windows, median)")
    with tempfile.TemporaryDirectory() as tmp:
        # Warm the GStreamer registry so start-up numbers are the warm case.
        subprocess.run(["gst-inspect-1.0", "opusenc"], capture_output=True)
        say()
        say("CPU per stream (% of one core), one client per stream:")
        say(f"{'N':>3} {'harkd':>8} {'floor':>8} {'ffmpeg+srv':>10} {'harkd/floor':>12} {'harkd/ffmpeg':>13}")
        rss16 = None
        for n in (1, 4, 16):
            hk, fl, pe, rss = [], [], [], []
            for _ in range(REPS):
                c, r = run_harkd(n, tmp)
                hk.append(c / n)
                rss.append(r)
                fl.append(run_floor(n) / n)
                pe.append(run_peer(n) / n)
            h, f, p = statistics.median(hk), statistics.median(fl), statistics.median(pe)
            say(f"{n:>3} {h:>8.2f} {f:>8.2f} {p:>10.2f} {h / f:>12.2f} {h / p:>13.2f}")
            if n == 16:
                rss16 = statistics.median(rss)
        say()
        say(f"harkd RSS with 16 streams and 16 clients: {rss16 / 1024:.1f} MiB")
        starts = [startup_to_play(tmp) for _ in range(REPS)]
        say(f"process start to first PLAY (warm registry): {statistics.median(starts):.1f} ms "
            f"(runs: {', '.join(f'{s:.1f}' for s in starts)})")
        results = [churn_rss(tmp) for _ in range(REPS)]
        firsts = [r[3] for r in results]
        say(f"connect to first RTP packet, running stream (median of 20 per run): "
            f"{statistics.median(firsts):.1f} ms (runs: {', '.join(f'{x:.1f}' for x in firsts)})")
        lat, bad, quiet, scraped = http_bench(tmp)
        for path, (p50, p99) in lat.items():
            say(f"HTTP {path} under 8 concurrent workers (16 streams playing): p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        say(f"HTTP errors among 2000 requests: {bad}")
        say(f"harkd CPU, 16 streams + clients: {quiet:.2f} % without scrapes, {scraped:.2f} % with a 1 s "
            f"/metrics + /api/v1/status scrape; control plane share {(scraped - quiet) / scraped * 100:.1f} % "
            f"(noise on a shared machine can make this negative)")
        deltas = [r[1] - r[0] for r in results]
        fails = sum(r[2] for r in results)
        say(f"RSS after 300 sessions minus before: {statistics.median(deltas)} KiB "
            f"(runs: {', '.join(f'{d}' for d in deltas)}; failed sessions: {fails})")
    r = subprocess.run(
        ["cargo", "test", "--release", "--locked", "--test", "devices", "bench", "--",
         "--ignored", "--nocapture"],
        cwd=ROOT, capture_output=True, text=True)
    bench_lines = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith("BENCH ")]
    if r.returncode != 0 or not bench_lines:
        say(f"device benchmark failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    for line in bench_lines:
        say(line[len("BENCH "):])
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    path = os.path.join(ROOT, "bench-results", f"bench-{time.strftime('%Y%m%d-%H%M%S')}.txt")
    with open(path, "w") as f:
        f.write("\n".join(out_lines) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()

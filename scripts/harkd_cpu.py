"""What the CPU benchmarks share: harkd started on a config, free ports, the
CPU a process uses over a window, and a median with its range
(scripts/group_cost.py, record_cost.py)."""

import contextlib
import json
import os
import socket
import statistics
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARKD = os.path.join(ROOT, "target/release/harkd")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ticks(pid):
    """User plus system CPU ticks of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def spread(xs):
    return f"{statistics.median(xs):.2f} [{min(xs):.2f}..{max(xs):.2f}]"


def cpu_percent(pid, settle, window):
    """% of a core process `pid` uses over `window` seconds, after `settle`."""
    time.sleep(settle)
    t0, c0 = time.monotonic(), ticks(pid)
    time.sleep(window)
    t1, c1 = time.monotonic(), ticks(pid)
    return 100.0 * (c1 - c0) / TICK / (t1 - t0)


@contextlib.contextmanager
def harkd(config_text, tmp):
    """harkd running `config_text` (written to `tmp`/hark.toml), without D-Bus;
    stopped on the way out."""
    path = os.path.join(tmp, "hark.toml")
    with open(path, "w") as f:
        f.write(config_text)
    h = subprocess.Popen([HARKD, "run", "--config", path, "--bus", "none"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield h
    finally:
        h.terminate()
        h.wait(10)


def status(http_port):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/status"))

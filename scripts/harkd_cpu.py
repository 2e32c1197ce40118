"""What the CPU benchmarks share: where harkd is, free ports, a process's CPU
ticks, and a median with its range (scripts/group_cost.py, record_cost.py)."""

import os
import socket
import statistics

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

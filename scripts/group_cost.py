#!/usr/bin/python3
"""What a group costs: `make bench-groups`.

harkd's CPU with 4 tone streams (Opus, 48 kHz mono, as members usually are), then
with the same 4 streams plus a 4-member merge group (L16, 4 channels) and a mix
group (Opus stereo) over them, then with the merge group alone; windows of
BENCH_WINDOW seconds (10) after a settling time, the configurations alternated
in each of BENCH_REPS reps (3), and the ratio taken per rep (this machine is
shared and noisy: the spread says how much to trust it). No client is
connected: a group's cost is its taps, its mixer, its chain and its encoder,
which run whether anyone listens or not. Also printed: each member's queue
(the latency the group adds), read from /api/v1/status.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harkd_cpu import HARKD, cpu_percent, free_port, harkd, spread, status  # noqa: E402

WINDOW = float(os.environ.get("BENCH_WINDOW", "10"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
SETTLE = 4.0


MEMBERS = ["m1", "m2", "m3", "m4"]


def config(groups, port, http):
    c = (f'[rtsp]\nbind = "127.0.0.1"\nport = {port}\n[http]\nlisten = "127.0.0.1:{http}"\n'
         "[devices]\nenabled = false\n")
    for i, m in enumerate(MEMBERS):
        c += f'[[stream]]\nname = "{m}"\nsource = "tone"\ntone_hz = {300 + 200 * i}.0\n'
    members = ", ".join(f'"{m}"' for m in MEMBERS)
    if "merge" in groups:
        c += f'[[group]]\nname = "merged"\nmode = "merge"\nmembers = [{members}]\ncodec = "l16"\n'
    if "mix" in groups:
        c += f'[[group]]\nname = "mixed"\nmode = "mix"\nmembers = [{members}]\n'
    return c


def measure(groups, tmp):
    port, http = free_port(), free_port()
    with harkd(config(groups, port, http), tmp) as h:
        cpu = cpu_percent(h.pid, SETTLE, WINDOW)
        st = status(http)
        if h.poll() is not None:
            sys.exit(f"harkd ended during the window ({groups})")
        running = [s for s in st["streams"] if s["state"] == "running"]
        if len(running) != len(st["streams"]):
            sys.exit(f"not every stream ran: {st['streams']}")
        lat = [m["latency_ms"] for s in st["streams"] if s.get("group")
               for m in s["group"]["members"]]
        return cpu, lat


def main():
    if not os.path.exists(HARKD):
        sys.exit(f"{HARKD} is missing: cargo build --release --locked -p hark-agent")
    runs = {"members": [], "merge": [], "merge+mix": []}
    lat = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(REPS):
            order = list(runs)
            order = order[rep % 3:] + order[:rep % 3]
            for name in order:
                groups = [] if name == "members" else name.split("+")
                cpu, l = measure(groups, tmp)
                runs[name].append(cpu)
                lat += [x for x in l if x is not None]
                print(f"rep {rep + 1}: {name}: {cpu:.2f} % of a core", flush=True)
    base = runs["members"]
    print(f"\n4 tone streams alone:            {spread(base)} % of a core")
    for name in ("merge", "merge+mix"):
        ratios = [w / b for w, b in zip(runs[name], base)]
        extra = [w - b for w, b in zip(runs[name], base)]
        print(f"with {name:<9} group(s):     {spread(runs[name])} %, "
              f"x{spread(ratios)} of the streams alone, +{spread(extra)} points")
    if lat:
        print(f"member queue (latency a group adds before its encoder): "
              f"{spread(lat)} ms over {len(lat)} readings")


if __name__ == "__main__":
    main()

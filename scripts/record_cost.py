#!/usr/bin/python3
"""What recording costs: `make bench-recording`.

harkd's CPU with 4 tone streams (48 kHz mono) streaming alone, then the same 4
with `record = true`, for Opus (written as Ogg Opus) and for L16 (written as
FLAC, the one recording that encodes: losslessly); windows of BENCH_WINDOW
seconds (10) after a settling time, the configurations alternated in each of
BENCH_REPS reps (3), and the ratio taken per rep (this machine is shared and
noisy: the spread says how much to trust it). No client is connected: the
capture and its encoder run whether anyone listens or not, so "alone" is the
cost of streaming. Also printed: the bytes written per stream and second.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harkd_cpu import HARKD, cpu_percent, free_port, harkd, spread, status  # noqa: E402

WINDOW = float(os.environ.get("BENCH_WINDOW", "10"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
SETTLE = 4.0
STREAMS = 4


def config(codec, record, port, http, rec_dir):
    c = (f'[rtsp]\nbind = "127.0.0.1"\nport = {port}\n[http]\nlisten = "127.0.0.1:{http}"\n'
         f'[devices]\nenabled = false\n[recording]\ndirectory = "{rec_dir}"\nmin_free_bytes = 0\n')
    for i in range(STREAMS):
        c += (f'[[stream]]\nname = "s{i}"\nsource = "tone"\ntone_hz = {300 + 200 * i}.0\n'
              f'codec = "{codec}"\nrecord = {"true" if record else "false"}\n')
    return c


def measure(codec, record, tmp):
    port, http = free_port(), free_port()
    rec_dir = tempfile.mkdtemp(dir=tmp)
    spawned = time.monotonic()
    with harkd(config(codec, record, port, http, rec_dir), tmp) as h:
        cpu = cpu_percent(h.pid, SETTLE, WINDOW)
        st = status(http)
        if h.poll() is not None:
            sys.exit(f"harkd ended during the window ({codec}, record={record})")
        if any(s["state"] != "running" for s in st["streams"]):
            sys.exit(f"not every stream ran: {st['streams']}")
        rate = None
        if record:
            rec = (st.get("recording") or {}).get("streams", {})
            states = [r["state"] for r in rec.values()]
            if states != ["recording"] * STREAMS:
                sys.exit(f"not every stream recorded: {rec}")
            # On disk now, over the time since harkd was started (an upper
            # bound on the time it recorded).
            written = sum(os.path.getsize(os.path.join(d, f))
                          for d, _, fs in os.walk(rec_dir) for f in fs)
            rate = written / STREAMS / (time.monotonic() - spawned)
        return cpu, rate


def main():
    if not os.path.exists(HARKD):
        sys.exit(f"{HARKD} is missing: cargo build --release --locked -p hark-agent")
    names = [("opus", False), ("opus", True), ("l16", False), ("l16", True)]
    runs = {n: [] for n in names}
    rates = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(REPS):
            order = names[rep % 4:] + names[:rep % 4]
            for n in order:
                cpu, rate = measure(n[0], n[1], tmp)
                runs[n].append(cpu)
                if rate is not None:
                    rates[n].append(rate)
                print(f"rep {rep + 1}: {n[0]} record={n[1]}: {cpu:.2f} % of a core", flush=True)
    for codec, container in (("opus", "Ogg Opus"), ("l16", "FLAC")):
        base, rec = runs[(codec, False)], runs[(codec, True)]
        ratios = [r / b for r, b in zip(rec, base)]
        extra = [r - b for r, b in zip(rec, base)]
        print(f"\n{STREAMS} {codec} streams alone:        {spread(base)} % of a core")
        print(f"{STREAMS} {codec} streams recorded ({container}): {spread(rec)} %, "
              f"x{spread(ratios)} of streaming alone, +{spread(extra)} points; "
              f"{spread([r / 1000 for r in rates[(codec, True)]])} kB written per stream-second")


if __name__ == "__main__":
    main()

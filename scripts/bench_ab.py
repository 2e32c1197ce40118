#!/usr/bin/env python3
"""Side-by-side checks of an explanation for harkd's CPU over the encode floor,
with `bench.py`'s own runs (the same harkd config, readers, floor and windows).

    scripts/bench_ab.py one-cpu N REPS    harkd/floor with both confined to CPU 0
                                          against both free, in the same reps
    scripts/bench_ab.py level-2s N REPS   harkd with the level meter posting every
                                          2 s against the default 250 ms, and the floor

Each rep runs every side back to back, the order reversed every other rep;
prints each rep's figures and the medians of the ratios. Needs a built harkd
(`cargo build --release`) and the tools `make bench` uses (gst-launch-1.0,
ffmpeg). It calls bench.py's `run_harkd`, `run_floor` and `harkd_config`: a
change to those is a change here. Not part of `make bench`: bench/README.md
says what these found.
"""

import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BENCH_WINDOW", "8")
import bench  # noqa: E402


def in_order(sides, rep):
    return sides if rep % 2 == 0 else tuple(reversed(sides))


def one_cpu(n, tmp, rep):
    """harkd and the floor on CPU 0, and free."""
    every = os.sched_getaffinity(0)
    got = {}
    try:
        for side in in_order(("harkd@0", "floor@0", "harkd", "floor"), rep):
            # Children inherit the affinity: harkd, its readers and the floor's encoders.
            os.sched_setaffinity(0, {0} if side.endswith("@0") else every)
            if side.startswith("floor"):
                got[side] = bench.run_floor(n, side)
            else:
                c, _, _, cs = bench.run_harkd(n, tmp, side)
                got[side] = (c, cs)
    finally:
        os.sched_setaffinity(0, every)
    return {"harkd/floor on CPU 0": got["harkd@0"][0] / got["floor@0"][0],
            "harkd/floor free": got["harkd"][0] / got["floor"][0]}, got


def level_2s(n, tmp, rep):
    """harkd with the level meter posting every 2 s, harkd as configured, the floor."""
    default = bench.harkd_config

    def slow(count, port):
        return default(count, port) + "\n[health]\nlevel_interval_ms = 2000\nstall_timeout_ms = 5000\n"
    got = {}
    try:
        for side in in_order(("harkd", "harkd level 2 s", "floor"), rep):
            if side == "floor":
                got[side] = bench.run_floor(n, side)
            else:
                bench.harkd_config = slow if side.endswith("2 s") else default
                c, _, _, cs = bench.run_harkd(n, tmp, side)
                got[side] = (c, cs)
    finally:
        bench.harkd_config = default
    return {"level 2 s/default": got["harkd level 2 s"][0] / got["harkd"][0],
            "harkd/floor": got["harkd"][0] / got["floor"][0]}, got


VARIANTS = {"one-cpu": one_cpu, "level-2s": level_2s}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in VARIANTS:
        sys.exit(__doc__)
    run, n, reps = VARIANTS[sys.argv[1]], int(sys.argv[2]), int(sys.argv[3])
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(reps):
            got_ratios, got = run(n, tmp, r)
            for k, v in got_ratios.items():
                ratios.setdefault(k, []).append(v)
            sides = "; ".join(f"{k} {c / n:.3f} % ({cs:.2f} switches/packet)" for k, (c, cs) in got.items())
            print(f"N={n} rep {r}: {sides} | " + ", ".join(f"{k} {v:.3f}" for k, v in got_ratios.items()),
                  flush=True)
    for k, v in ratios.items():
        print(f"N={n}, {reps} reps: {k} {statistics.median(v):.3f} [{min(v):.3f}..{max(v):.3f}]")


if __name__ == "__main__":
    main()

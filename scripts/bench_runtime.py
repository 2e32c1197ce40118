#!/usr/bin/python3
"""The supervisor's own cost at 32 streams, two harkd builds side by side.

    python3 scripts/bench_runtime.py OLD_HARKD NEW_HARKD

Each build runs 32 tone streams on a private D-Bus session bus (so the
snapshot is mirrored to D-Bus as on a real board), warms up 6 s, then the
CPU time of the whole process and of its runtime thread (the tokio thread
running the supervisor, D-Bus and HTTP: what rebuilding and mirroring the
snapshot costs) is read from /proc over WINDOW seconds (default 20). Builds
alternate, REPS times (default 3); ratios are paired rep by rep, so noise
from a shared machine hits both alike. Build the old one from a git worktree
with its own CARGO_TARGET_DIR (`cargo build --release -p hark-agent`).
"""
import os, subprocess, sys, time, socket, tempfile, statistics, json
OLD, NEW = sys.argv[1], sys.argv[2]
N = 32; WINDOW = float(os.environ.get("WINDOW", "20")); REPS = int(os.environ.get("REPS", "3"))
HZ = os.sysconf("SC_CLK_TCK")
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def ticks(pid, task=None):
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    f = open(path).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
addr = bus.stdout.readline().strip()
def run(binary):
    d = tempfile.mkdtemp()
    cfg = f"[rtsp]\nbind = \"127.0.0.1\"\nport = {free_port()}\n\n[http]\nlisten = \"127.0.0.1:{free_port()}\"\n\n[devices]\nenabled = false\nstate_dir = \"{d}\"\n"
    for i in range(N):
        cfg += f"\n[[stream]]\nname = \"s{i}\"\nsource = \"tone\"\ntone_hz = {300+10*i}.0\n"
    open(f"{d}/hark.toml", "w").write(cfg)
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=addr, HARK_LOG="warn")
    p = subprocess.Popen([binary, "run", "--bus", "session", "--config", f"{d}/hark.toml"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(6)
    assert p.poll() is None, f"{binary} exited"
    t0 = ticks(p.pid); m0 = ticks(p.pid, p.pid); w0 = time.monotonic()
    time.sleep(WINDOW)
    el = time.monotonic() - w0
    cpu = (ticks(p.pid) - t0) / HZ / el * 100
    main = (ticks(p.pid, p.pid) - m0) / HZ / el * 100
    p.terminate(); p.wait(10)
    return cpu, main
res = {"old": [], "new": []}
for r in range(REPS):
    for k, b in (("old", OLD), ("new", NEW)):
        res[k].append(run(b))
        print(k, r, "process %.1f%%  runtime thread %.2f%%" % res[k][-1], flush=True)
bus.terminate()
for k in res:
    c = [x[0] for x in res[k]]; m = [x[1] for x in res[k]]
    print(f"{k}: process CPU % min/median/max {min(c):.1f}/{statistics.median(c):.1f}/{max(c):.1f}; "
          f"runtime thread (supervisor, D-Bus, HTTP) % {min(m):.2f}/{statistics.median(m):.2f}/{max(m):.2f}")
ratios = sorted(n[0] / o[0] for n, o in zip(res["new"], res["old"]))
print("new/old process CPU per rep (paired): " + ", ".join(f"{x:.2f}" for x in ratios))
ratios = sorted(n[1] / o[1] for n, o in zip(res["new"], res["old"]) if o[1] > 0)
print("new/old runtime-thread CPU per rep (paired): " + ", ".join(f"{x:.2f}" for x in ratios))

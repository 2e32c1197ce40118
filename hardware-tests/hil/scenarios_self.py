"""The runner's own bounds (runner-bounds), and the inner scenarios it runs in
a second runner, which must fail."""

import os
import subprocess
import sys
import time

from .common import HERE, HilError, wait_until


def scenario_hung_guest(g):
    """Not run on its own (see runner-bounds): the guest's CPUs are stopped
    through the QEMU monitor, so it hangs for real, and a command waits on it
    with no time limit of its own. Only the scenario's bound can end this."""
    print(f"hil: hung guest: qemu pid {g.proc.pid}, work dir {g.dir}", flush=True)
    g.sh("echo 'HIL: about to hang' > /dev/console")
    g.monitor("stop")
    g.sh("true", timeout=10**6)


def scenario_bound_in_retry(g):
    """Not run on its own (see runner-bounds): the scenario's bound expires
    inside wait_until, whose retry loop catches what its probe raises; the
    bound must still end the scenario as a failure."""
    print(f"hil: retrying guest: qemu pid {g.proc.pid}, work dir {g.dir}", flush=True)
    wait_until("something that never happens", 10**6, lambda: time.sleep(1) or False)
    print("hil: the retry loop outlived the bound", flush=True)


def scenario_crashed_guest(g):
    """Not run on its own (see runner-bounds): the guest kernel crashes
    (sysrq c; panic=-1 and -no-reboot make QEMU exit) in the middle of a
    command."""
    print(f"hil: crashed guest: qemu pid {g.proc.pid}, work dir {g.dir}", flush=True)
    g.sh("echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger", timeout=60)


def scenario_runner_bounds(fast_dir):
    """The runner itself: a guest that hangs is killed when its scenario's
    bound expires, and one whose kernel crashes is seen at once; both are
    reported as failures with their serial console, the run's exit status is
    1, and no QEMU process or work directory is left behind."""
    bound = 15
    t = time.monotonic()
    # The same runner, a second process: `python3 -m hil` with hardware-tests/ on the path.
    pythonpath = os.pathsep.join(d for d in (HERE, os.environ.get("PYTHONPATH")) if d)
    p = subprocess.run([sys.executable, "-m", "hil", fast_dir,
                        "_hung-guest", "_crashed-guest", "_bound-in-retry"],
                       env={**os.environ, "HIL_HUNG_BOUND": str(bound),
                            "PYTHONPATH": pythonpath},
                       capture_output=True, text=True, timeout=240)
    out = p.stdout + p.stderr
    took = time.monotonic() - t
    print(f"hil: runner-bounds: the inner run exited {p.returncode} after {took:.0f} s", flush=True)
    expect = [
        f"hil: _hung-guest: FAIL: scenario exceeded its {bound} s bound",
        "--- serial console of _hung-guest ---",
        "HIL: about to hang",
        "hil: _crashed-guest: FAIL: ",
        "--- serial console of _crashed-guest ---",
        "sysrq: Trigger a crash",
        f"hil: _bound-in-retry: FAIL: scenario exceeded its {bound} s bound",
        "hil: FAIL _hung-guest",
        "hil: FAIL _crashed-guest",
        "hil: FAIL _bound-in-retry",
        "hil: 0/3 passed",
    ]
    missing = [e for e in expect if e not in out]
    if p.returncode != 1 or missing or "PASS" in out or "outlived the bound" in out:
        raise HilError(f"the runner did not report a hung, a crashed and an overrunning "
                       f"guest as failures "
                       f"(exit {p.returncode}; missing {missing}):\n{out[-6000:]}")
    guests = [line for line in out.splitlines()
              if line.startswith(("hil: hung guest: qemu pid", "hil: crashed guest: qemu pid",
                                  "hil: retrying guest: qemu pid"))]
    if len(guests) != 3:
        raise HilError(f"the inner run did not start all three guests:\n{out[-6000:]}")
    for line in guests:
        pid, workdir = int(line.split()[5].rstrip(",")), line.split("work dir ")[1]
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"qemu-system" in f.read():
                    raise HilError(f"QEMU {pid} is still running after its scenario failed")
        except FileNotFoundError:
            pass
        if os.path.exists(workdir):
            raise HilError(f"{workdir} was left behind")


SCENARIOS = {
    # name: (function, time bound in s, what it is given)
    "runner-bounds": (scenario_runner_bounds, 300, "fast-artifacts"),
}
# Run only by runner-bounds, which expects them to fail.
INNER = {
    "_hung-guest": (scenario_hung_guest, int(os.environ.get("HIL_HUNG_BOUND", "15")), "fast"),
    "_crashed-guest": (scenario_crashed_guest, 120, "fast"),
    "_bound-in-retry": (scenario_bound_in_retry, int(os.environ.get("HIL_HUNG_BOUND", "15")),
                        "fast"),
}

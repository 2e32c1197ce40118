"""Runs scenarios, each within its time bound, and reports them. A scenario
table maps a name to (function, time bound in s, what it is given): "fast" (a
booted fast-tier guest), "fast-artifacts" (the fast tier's directory) or
"system" (the system tier's directory). The tables are the scenario modules';
__main__ hands them in, so this module imports no scenario."""

import os
import shutil
import signal
import time
import traceback

from .common import FixturesUpdated, HilError, ScenarioTimeout
from .guest import LIVE, Guest, machine


def run(scenarios, fast_dir, system_dir, names):
    """Runs `names` from the table `scenarios`; returns [(name, passed, seconds)]."""
    results = []
    # The accelerator probe (up to 15 s) is not charged to the first scenario.
    qemu = machine(fast_dir)[0]
    print(f"hil: guests: {' '.join(qemu)}", flush=True)
    for name in names:
        fn, limit, given = scenarios[name]
        results.append(run_one(name, fn, limit, given, fast_dir, system_dir))
    return results


def run_one(name, fn, limit, given, fast_dir, system_dir):
    """One scenario, ended by ScenarioTimeout when its bound expires; its guests
    are shown on failure and always closed, their work directories removed."""
    t = time.monotonic()
    LIVE.clear()

    def on_alarm(*_):
        raise ScenarioTimeout(f"scenario exceeded its {limit} s bound")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        call(name, fn, given, fast_dir, system_dir)
        signal.alarm(0)
        result = (name, True, time.monotonic() - t)
        print(f"hil: {name}: PASS in {time.monotonic() - t:.1f} s", flush=True)
    except FixturesUpdated as e:
        signal.alarm(0)
        result = (name, False, time.monotonic() - t)
        print(f"hil: {name}: UPDATED, not a pass: {e}", flush=True)
    except (Exception, ScenarioTimeout) as e:
        signal.alarm(0)
        result = (name, False, time.monotonic() - t)
        print(f"hil: {name}: FAIL: {e}", flush=True)
        traceback.print_exc()
        show_guests()
    finally:
        for g in LIVE:
            g.close()
            shutil.rmtree(g.dir, ignore_errors=True)
    return result


def call(name, fn, given, fast_dir, system_dir):
    """Calls the scenario with what it is given."""
    if given == "fast":
        g = Guest(fast_dir, name)
        print(f"hil: {name}: booted in {g.boot_s:.1f} s", flush=True)
        fn(g)
    elif given == "fast-artifacts":
        fn(fast_dir)
    else:
        if system_dir is None:
            raise HilError("the system tier's artifacts were not given (--system DIR)")
        fn(system_dir)


def show_guests():
    """The serial console of each guest of the failed scenario, and harkd's log
    from those still running."""
    for g in LIVE:
        print(f"--- serial console of {g.name} ---\n{g.console_text()[-6000:]}", flush=True)
        if g.proc is not None and g.proc.poll() is not None:
            # QEMU itself ended (a failed start says why only here).
            try:
                with open(os.path.join(g.dir, "qemu.log"), "rb") as f:
                    text = f.read().decode("utf-8", "replace")[-3000:]
            except OSError:
                text = "(no qemu.log)"
            print(f"--- QEMU exited with {g.proc.returncode}; its output ---\n{text}", flush=True)
        try:
            if g.proc is not None and g.proc.poll() is None:
                log = "tail -n 60 /tmp/harkd.log 2>/dev/null || journalctl -b --no-pager -n 80"
                print(f"--- harkd log ---\n{g.sh(log, timeout=10)[1]}")
        except Exception:
            pass


def summary(results, started):
    """The closing lines (one PASS/FAIL line a scenario, then the count); the
    exit status: 0 only when every scenario ran and passed."""
    for name, ok, secs in results:
        print(f"hil: {'PASS' if ok else 'FAIL'} {name} ({secs:.0f} s)")
    print(f"hil: {sum(ok for _, ok, _ in results)}/{len(results)} passed "
          f"in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if results and all(ok for _, ok, _ in results) else 1

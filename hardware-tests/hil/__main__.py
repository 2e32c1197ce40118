"""Hardware-in-the-loop scenarios: real Linux kernels in QEMU, real udev, real
ALSA drivers, harkd inside, real RTSP clients on the host.

usage: hardware-tests/hil.py FAST_DIR [--system SYSTEM_DIR] [SCENARIO ...]

FAST_DIR holds vmlinux and initrd.cpio (hardware-tests/build-guest.sh);
SYSTEM_DIR holds disk.raw, initrd.cpio and vmlinux (hardware-tests/build-system.sh).
Every scenario boots its own guest and is bounded in time; a hung guest is
killed and reported as a failure with its serial console attached. Exit status
0 only when every scenario ran and passed: nothing is skipped.
"""

import sys
import time

from . import scenarios_fast, scenarios_self, scenarios_system
from .runner import run, summary

# In the order a full run takes them.
SCENARIOS = {**scenarios_self.SCENARIOS, **scenarios_fast.SCENARIOS,
             **scenarios_system.SCENARIOS}
# Run only by runner-bounds, which expects them to fail.
INNER = scenarios_self.INNER


def main():
    args = sys.argv[1:]
    system_dir = None
    if "--system" in args:
        i = args.index("--system")
        system_dir = args[i + 1]
        del args[i:i + 2]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    fast_dir, names = args[0], args[1:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS and n not in INNER]
    if unknown:
        print(f"unknown scenarios: {unknown}; known: {list(SCENARIOS)}", file=sys.stderr)
        return 2
    t = time.monotonic()
    results = run({**SCENARIOS, **INNER}, fast_dir, system_dir, names)
    return summary(results, t)


if __name__ == "__main__":
    sys.exit(main())

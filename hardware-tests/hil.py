#!/usr/bin/python3
"""`python3 hardware-tests/hil.py FAST_DIR [--system SYSTEM_DIR] [SCENARIO ...]`:
the hardware-in-the-loop runner, which is the package hil/ next to this file
(this is `python3 -m hil` run from hardware-tests/). `import hil` finds the
package, not this file: a package directory comes before a module of the same
name."""

import sys

from hil.__main__ import main

if __name__ == "__main__":
    sys.exit(main())

"""What every part of the runner shares: its errors, the retry loop, paths."""

import os
import socket
import time

# hardware-tests/
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class HilError(Exception):
    pass


class FixturesUpdated(Exception):
    """HIL_UPDATE_FIXTURES=1 rewrote fixtures: nothing was compared, so the
    scenario is reported as an update, never as a pass."""


class ScenarioTimeout(BaseException):
    """A scenario's time bound expired. Not an Exception: the `except
    Exception` of a retry loop (wait_until, a plug loop) must not swallow it
    and let the scenario overrun its bound and still pass."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, timeout, fn, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # the endpoint may not be up yet
            last = e
        time.sleep(interval)
    raise HilError(f"timed out after {timeout} s waiting for {what} (last error: {last})")

"""What every part of the runner shares: its errors, the retry loop, paths."""

import os
import socket
import time

# hardware-tests/
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The fast tier's harkd listens for HTTP on every guest address (the host
# reaches it through QEMU's port forward), so it asks for credentials.
HTTP_USER, HTTP_PASSWORD = "hil", "hil-http-pass"


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


class AlertReceiver:
    """A webhook receiver on the host's loopback, which the guest reaches as
    http://10.0.2.2:PORT/ (QEMU's user network maps its gateway to the host):
    collects the JSON bodies harkd posts."""

    def __init__(self):
        import http.server
        import json
        import threading
        self.bodies = []
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                try:
                    bodies.append(dict(json.loads(body), _received=time.monotonic()))
                except ValueError:
                    bodies.append({"event": "(not JSON)", "raw": body.decode("utf-8", "replace")})
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def config(self, events):
        """An [[alert]] table for the guest's hark.toml."""
        listed = ", ".join(f'"{e}"' for e in events)
        return (f'\n[[alert]]\nname = "host"\nurl = "http://10.0.2.2:{self.port}/hil"\n'
                f"events = [{listed}]\nretries = 3\ntimeout_s = 5\n")

    def of(self, event):
        return [b for b in self.bodies if b.get("event") == event]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

#!/usr/bin/env python3
"""A webhook receiver for harkd's alert tests: Python's own HTTP server (and
TLS, with --cert/--key), recording every request it gets as one JSON line
(arrival time, path, headers with lowercase names, body) in --log.

--mode ok answers 204, fail answers 500, hang reads the request and never
answers. Prints the port it listens on (127.0.0.1), then serves until killed.
"""
import argparse
import http.server
import json
import ssl
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--mode", choices=["ok", "fail", "hang"], default="ok")
p.add_argument("--log", required=True)
p.add_argument("--cert")
p.add_argument("--key")
args = p.parse_args()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        record = {
            "t": time.time(),
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        with lock, open(args.log, "a") as f:
            f.write(json.dumps(record) + "\n")
        if args.mode == "hang":
            time.sleep(3600)
            return
        self.send_response(204 if args.mode == "ok" else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
if args.cert:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()

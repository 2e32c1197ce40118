#!/usr/bin/env python3
"""What listening in a browser costs: `make bench-web`.

harkd's CPU and memory with one tone stream (48 kHz mono) and nobody
listening, then with one RTSP client (ffmpeg, as BirdNET pulls), then with 1
and 4 browsers listening over WHEP (tabs of Debian's headless Chromium). For
an Opus stream (sent to browsers as encoded) and an L16 one (each listener
gets an Opus branch: decode-free, but one Opus encode per browser). Windows of
BENCH_WINDOW seconds (10) after a settling time, the configurations alternated
in each of BENCH_REPS reps (3), ratios to "alone" taken per rep (this machine
is shared and noisy: the spread says how much to trust it). Only harkd's own
CPU is counted, not the browser's. Run with the browser tests' Python
(scripts/browser-venv.sh), as the Makefile does.
"""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harkd_cpu import HARKD, cpu_percent, free_port, harkd, spread, status  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

WINDOW = float(os.environ.get("BENCH_WINDOW", "10"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
SETTLE = 3.0
SETUPS = ["alone", "rtsp", "browser1", "browser4"]


def config(codec, port, http):
    return (f'[rtsp]\nbind = "127.0.0.1"\nport = {port}\n[http]\nlisten = "127.0.0.1:{http}"\n'
            f'[devices]\nenabled = false\n'
            f'[[stream]]\nname = "s"\nsource = "tone"\ntone_hz = 440.0\ncodec = "{codec}"\n')


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--autoplay-policy=no-user-gesture-required"):
        o.add_argument(a)
    return webdriver.Chrome(options=o, service=Service("/usr/bin/chromedriver"))


def listen_tabs(d, url, n):
    for i in range(n):
        if i:
            d.switch_to.new_window("tab")
        d.get(url)
        end = time.monotonic() + 15
        while not d.find_elements(By.CSS_SELECTOR, 'li[data-stream="s"] button.play'):
            if time.monotonic() > end:
                sys.exit("the page never listed the stream")
            time.sleep(0.1)
        d.find_element(By.CSS_SELECTOR, 'li[data-stream="s"] button.play').click()


def measure(codec, setup, tmp):
    port, http = free_port(), free_port()
    with harkd(config(codec, port, http), tmp) as h:
        end = time.monotonic() + 15
        while True:
            try:
                if status(http)["streams"][0]["state"] == "running":
                    break
            except OSError:
                pass
            if time.monotonic() > end:
                sys.exit("the stream never ran")
            time.sleep(0.1)
        rss0 = rss_kib(h.pid)
        client, d = None, None
        try:
            if setup == "rtsp":
                client = subprocess.Popen(
                    ["ffmpeg", "-loglevel", "error", "-rtsp_transport", "tcp", "-i",
                     f"rtsp://127.0.0.1:{port}/s", "-f", "null", "-"],
                    stdin=subprocess.DEVNULL)
            elif setup.startswith("browser"):
                d = browser()
                listen_tabs(d, f"http://127.0.0.1:{http}/", int(setup[len("browser"):]))
            cpu = cpu_percent(h.pid, SETTLE, WINDOW)
            st = status(http)["streams"][0]
            want = {"alone": 0, "rtsp": 1, "browser1": 1, "browser4": 4}[setup]
            if st["clients"] != want:
                sys.exit(f"{codec} {setup}: {st['clients']} clients, expected {want}")
            rss = rss_kib(h.pid) - rss0
        finally:
            if client:
                client.terminate()
                client.wait(10)
            if d:
                d.quit()
        return cpu, rss


def main():
    if not os.path.exists(HARKD):
        sys.exit(f"{HARKD} is missing: make build")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for codec in ("opus", "l16"):
            runs = {s: [] for s in SETUPS}
            rss = {s: [] for s in SETUPS}
            for rep in range(REPS):
                order = SETUPS[rep % len(SETUPS):] + SETUPS[:rep % len(SETUPS)]
                for s in order:
                    cpu, grown = measure(codec, s, tmp)
                    runs[s].append(cpu)
                    rss[s].append(grown / 1024)
                    print(f"rep {rep + 1}: {codec} {s}: {cpu:.2f} % of a core, RSS +{grown} KiB", flush=True)
            results[codec] = (runs, rss)
    for codec, (runs, rss) in results.items():
        base = runs["alone"]
        print(f"\n{codec} stream alone: {spread(base)} % of a core")
        for s in SETUPS[1:]:
            ratios = [r / b for r, b in zip(runs[s], base)]
            extra = [r - b for r, b in zip(runs[s], base)]
            print(f"{codec} {s:9}: {spread(runs[s])} %, x{spread(ratios)} of alone, "
                  f"+{spread(extra)} points; RSS +{spread(rss[s])} MiB")


if __name__ == "__main__":
    main()

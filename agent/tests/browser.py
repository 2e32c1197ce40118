"""Drives Debian's headless Chromium against a running harkd's status page.

Run by agent/tests/web.rs with the Python of target/tools/browser-venv (made by
scripts/browser-venv.sh: Selenium from PyPI; the browser and its driver are
Debian's chromium and chromium-driver, nothing is downloaded at run time).

    browser.py page URL SCREENSHOT STREAM...   the list, the meters, listening
    browser.py churn URL STREAM N              N sessions opened and closed
    browser.py hold URL STREAM                 listens until killed

Prints one JSON object per line: progress lines ("event") and a last line
with the results. Every wait is bounded.
"""

import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

STATS = """
const done = arguments[arguments.length - 1];
const L = hark.listeners[arguments[0]];
if (!L) { done({listening: false, errors: hark.errors}); return; }
L.pc.getStats().then((st) => {
  const out = {listening: true, state: L.pc.connectionState, rms: L.rms ?? null,
               errors: hark.errors, packets: 0, energy: 0, samples: 0};
  st.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      out.packets = s.packetsReceived || 0;
      out.energy = s.totalAudioEnergy || 0;
      out.samples = s.totalSamplesReceived || 0;
      out.codec = s.codecId;
    }
  });
  done(out);
}, (e) => done({listening: true, error: String(e), errors: hark.errors}));
"""


def say(**kw):
    print(json.dumps(kw), flush=True)


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1100,1000",
    ):
        o.add_argument(a)
    d = webdriver.Chrome(options=o, service=Service("/usr/bin/chromedriver"))
    d.set_page_load_timeout(20)
    d.set_script_timeout(10)
    return d


def wait(what, timeout, probe, detail=lambda: ""):
    end = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}{detail()}")
        time.sleep(0.1)


def card(d, stream):
    return d.find_element(By.CSS_SELECTOR, f'li[data-stream="{stream}"]')


def open_page(d, url, streams):
    d.get(url)
    wait("the first event", 10, lambda: d.execute_script("return hark.events") >= 1)
    wait(
        f"cards for {streams}",
        20,
        lambda: all(d.find_elements(By.CSS_SELECTOR, f'li[data-stream="{s}"]') for s in streams),
    )


def listen(d, stream, packets=20, timeout=30):
    """Presses Listen and waits for `packets` RTP packets; returns the stats."""
    started = time.monotonic()
    card(d, stream).find_element(By.CSS_SELECTOR, "button.play").click()
    last = {}

    def flowing():
        s = d.execute_async_script(STATS, stream)
        last.update(s)
        return s if s.get("packets", 0) >= packets else None

    def detail():
        try:
            shown = card(d, stream).text
        except Exception as e:  # the page itself may be the trouble
            shown = f"(no card: {e})"
        return f" (the listener: {json.dumps(last)}; its card reads: {shown!r})"

    s = wait(f"{packets} packets of {stream}", timeout, flowing, detail)
    s["took_s"] = time.monotonic() - started
    return s


def page(url, shot, streams):
    d = browser()
    try:
        open_page(d, url, streams)
        names = d.execute_script(
            "return [...document.querySelectorAll('#streams li')].map(li => li.dataset.stream)"
        )
        devices = d.execute_script(
            "return [...document.querySelectorAll('#devices tbody tr')].map(tr => tr.innerText)"
        )
        say(event="listed", streams=names, devices=devices)
        # The meters as the page shows them, for 4 s (the test changes a
        # mic's level meanwhile).
        meters = {s: [] for s in streams}
        events_before = d.execute_script("return hark.events")
        end = time.monotonic() + 4
        while time.monotonic() < end:
            for s in streams:
                v = card(d, s).find_element(By.CSS_SELECTOR, ".meter").get_attribute("aria-valuenow")
                meters[s].append(float(v) if v is not None else None)
            time.sleep(0.2)
        events = d.execute_script("return hark.events") - events_before
        listened = {}
        for s in streams:
            first = listen(d, s)
            time.sleep(2)
            second = d.execute_async_script(STATS, s)
            listened[s] = {"first": first, "second": second}
            if s == streams[0]:
                d.save_screenshot(shot)
            card(d, s).find_element(By.CSS_SELECTOR, "button.play").click()
        errors = d.execute_script("return hark.errors")
        say(event="done", streams=names, devices=devices, meters=meters, events=events,
            listened=listened, errors=errors)
    finally:
        d.quit()


def churn(url, stream, n):
    d = browser()
    took = []
    ways = {"stop": 0, "reload": 0}
    try:
        for i in range(n):
            open_page(d, url, [stream])
            s = listen(d, stream, packets=5)
            took.append(round(s["took_s"], 3))
            if i % 2 == 0:
                # The Stop button: pc.close() and DELETE.
                card(d, stream).find_element(By.CSS_SELECTOR, "button.play").click()
                ways["stop"] += 1
            else:
                # Leaving the page: pagehide sends the DELETE (keepalive).
                ways["reload"] += 1
        d.get("about:blank")
        time.sleep(0.5)
        say(event="done", sessions=len(took), took=took, ways=ways,
            errors=d.execute_script("return typeof hark === 'undefined' ? [] : hark.errors"))
    finally:
        d.quit()


def hold(url, stream):
    d = browser()
    open_page(d, url, [stream])
    s = listen(d, stream)
    say(event="listening", packets=s["packets"])
    # Until killed (the test kills this process group: a browser that vanishes).
    end = time.monotonic() + 120
    while time.monotonic() < end:
        time.sleep(1)
    d.quit()


def main():
    cmd, url = sys.argv[1], sys.argv[2]
    if cmd == "page":
        page(url, sys.argv[3], sys.argv[4:])
    elif cmd == "churn":
        churn(url, sys.argv[3], int(sys.argv[4]))
    elif cmd == "hold":
        hold(url, sys.argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

"""The fast tier's scenarios: an initramfs with busybox and udevd, harkd
started directly."""

import base64
import datetime
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time

from .agent import (GUEST_CONFIG, device_streams, harkd_alive, harkd_memory, start_harkd, wait_loud,
                    wait_stream)
from .audio import (PLAYER_RMS, USB_MIC_RMS, assert_tone, audiocheck, ffmpeg_pull, longest_gap_ms,
                    pcm_sketch, rtsp_play, tone_report)
from .common import HERE, AlertReceiver, FixturesUpdated, HilError, wait_until
from .guest import Guest, is_aarch64
from .mic import UsbMic


def play_into_loopback(g, freq, card):
    # plughw: snd-aloop makes the playback side take the format the capture side
    # opened with (harkd opens the card's native 32 channels).
    g.sh(f"gst-launch-1.0 -q audiotestsrc freq={freq} volume=0.25 is-live=true ! "
         "audio/x-raw,rate=48000,channels=2,format=S16LE ! "
         f"alsasink device=plughw:{card},1,0 buffer-time=1000000 > /tmp/play.log 2>&1 &")


def scenario_aloop_hotplug(g):
    """snd-aloop loaded after harkd started: a real kernel card, real uevents
    through systemd-udevd, a stream whose audio a host client decodes; the card
    unbound mid-stream (as if unplugged) and bound again: same name, audio again."""
    start_harkd(g)
    t0 = time.monotonic()
    g.sh("modprobe snd-aloop")
    streams = wait_until("a stream for the Loopback card", 20, lambda: device_streams(g))
    name, st = next(iter(streams.items()))
    card = st["card"]
    print(f"hil: snd-aloop -> stream /{name} in {time.monotonic() - t0:.2f} s", flush=True)
    # The name is pinned into the card id (the kernel had called it "Loopback").
    card_id = g.sh(f"cat /proc/asound/card{card}/id")[1].strip()
    if card_id != name:
        raise HilError(f"card id {card_id!r}, wanted the stream name {name!r}")
    play_into_loopback(g, 1000, card)
    wait_loud(g, name)
    url = f"rtsp://127.0.0.1:{g.rtsp_port}/{name}"
    assert_tone(ffmpeg_pull(url, 3), 1000, f"/{name} before unplug", PLAYER_RMS)

    # Unbind the card while the stream runs: the card disappears with remove
    # uevents, the stream ends, the agent lives on.
    g.sh("echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/unbind")
    wait_until(f"/{name} removed", 10, lambda: name not in device_streams(g))
    if not harkd_alive(g):
        raise HilError("harkd died when the card went away")
    g.sh("echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/bind")
    wait_until(f"/{name} back", 20, lambda: name in device_streams(g))
    g.sh("pkill gst-launch-1.0; true")
    card = device_streams(g)[name]["card"]
    play_into_loopback(g, 440, card)
    wait_loud(g, name)
    assert_tone(ffmpeg_pull(url, 3), 440, f"/{name} after replug", PLAYER_RMS)


ALOOP_RATES_CONFIG = GUEST_CONFIG.replace("allow_non_usb = true", "allow_non_usb = false") + """
# Two capture substreams of the loopback card at other rates and channel counts.
[[stream]]
name = "hi-res"
source = "alsa"
device = "hw:Loopback,0,1"
codec = "l16"
sample_rate = 96000
channels = 2

[[stream]]
name = "narrow"
source = "alsa"
device = "hw:Loopback,0,2"
codec = "opus"
sample_rate = 16000
channels = 1
"""


def scenario_aloop_rates(g):
    """The data path at other rates and channel counts through a real kernel
    driver: snd-aloop substreams captured at 96 kHz stereo (L16) and 16 kHz mono
    (Opus), each fed its own tone, each decoded on the host."""
    g.sh("modprobe snd-aloop")
    start_harkd(g, ALOOP_RATES_CONFIG)
    for sub, rate, ch, freq in ((1, 96000, 2, 3000), (2, 16000, 1, 500)):
        g.sh(f"gst-launch-1.0 -q audiotestsrc freq={freq} volume=0.25 is-live=true ! "
             f"audio/x-raw,rate={rate},channels={ch},format=S16LE ! "
             f"alsasink device=plughw:Loopback,1,{sub} buffer-time=1000000 "
             f"> /tmp/play{sub}.log 2>&1 &")
    for name, freq in (("hi-res", 3000), ("narrow", 500)):
        wait_loud(g, name, 30)
        st = next(s for s in g.http_json("/api/v1/status")["streams"] if s["name"] == name)
        assert_tone(ffmpeg_pull(f"rtsp://127.0.0.1:{g.rtsp_port}/{name}", 3), freq,
                    f"/{name} ({st['codec']} {st['sample_rate']} Hz {st['channels']} ch)",
                    PLAYER_RMS)


def scenario_usb_hotplug(g):
    """An emulated USB mic plugged in over USB/IP: the guest's snd-usb-audio and
    udev see a real USB Audio Class device; its stream plays the mic's tone on
    the host; unplugged mid-stream with a client connected, the stream ends and
    the agent lives, and a webhook on the host is told "device removed";
    plugged back, the same name returns with audio."""
    alerts = AlertReceiver()
    try:
        usb_hotplug(g, alerts)
    finally:
        alerts.close()


def usb_hotplug(g, alerts):
    start_harkd(g, GUEST_CONFIG + alerts.config(["device_added", "device_removed"]))
    mic = UsbMic(g, serial="HILSER01", name="Field Mic", tone=1000)
    name, st = wait_stream(g, "the mic's stream", 20)
    print(f"hil: USB mic -> stream /{name} (card {st['card']}) in "
          f"{time.monotonic() - mic.plugged_at:.2f} s", flush=True)
    print(g.sh(f"cat /proc/asound/cards /proc/asound/card{st['card']}/stream0")[1], flush=True)
    wait_until(f"/{name} running", 20,
               lambda: device_streams(g).get(name, {}).get("state") == "running")
    url = f"rtsp://127.0.0.1:{g.rtsp_port}/{name}"
    # The level meter shows the tone before the pull: a mic just plugged may
    # take a moment to deliver at full rate (a pull right after "running"
    # decoded 2.88 s of 3 here once, 2.01 s once in the system tier, before the
    # emulated mic caught up after its own late starts; kept as the cheap guard).
    wait_loud(g, name)
    mic.assert_tone(url, 1000, f"/{name}")
    # Unplug with a client connected: the client ends, the agent lives.
    client = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
         "-f", "null", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    t = time.monotonic()
    mic.stop()
    wait_until(f"/{name} removed", 10, lambda: name not in device_streams(g))
    try:
        client.wait(timeout=10)
    except subprocess.TimeoutExpired:
        client.kill()
        raise HilError("the RTSP client was not ended by the unplug")
    ended = time.monotonic() - t
    print(f"hil: unplug -> stream gone and client ended in {ended:.2f} s", flush=True)
    if ended > 1.0:
        raise HilError(f"the RTSP client ended {ended:.2f} s after the unplug, not within 1 s")
    if not harkd_alive(g):
        raise HilError("harkd died on unplug")
    removed = wait_until("the host's webhook told of the unplug", 15,
                         lambda: alerts.of("device_removed"))
    told = removed[0]["_received"] - t
    device = removed[0].get("device") or {}
    print(f"hil: unplug -> device_removed alert on the host in {told:.2f} s: "
          f"{removed[0].get('message')}", flush=True)
    if device.get("serial") != "HILSER01" or device.get("name") != name:
        raise HilError(f"device_removed names another device: {removed[0]}")
    if len(alerts.of("device_added")) != 1 or len(removed) != 1:
        raise HilError(f"one alert per plug and unplug expected: {alerts.bodies}")
    # A vanished device is a removal, not a failure to retry: no capture is
    # restarted against the missing card (no backoff storm).
    time.sleep(3)
    log = g.sh("cat /tmp/harkd.log")[1].splitlines()
    retries = [l for l in log if '"restarting capture"' in l and f'"stream":"{name}"' in l]
    if retries:
        raise HilError(f"capture restarted against an unplugged mic: {retries[:3]}")
    scheduled = sum('"restart scheduled"' in l and f'"stream":"{name}"' in l for l in log)
    print(f"hil: after unplug: 0 restarts, {scheduled} scheduled and cancelled", flush=True)
    mic = UsbMic(g, serial="HILSER01", name="Field Mic", tone=440)
    back, _ = wait_stream(g, "the mic's stream again", 20)
    if back != name:
        raise HilError(f"replugged mic came back as /{back}, not /{name}")
    wait_until(f"/{name} running again", 20,
               lambda: device_streams(g).get(name, {}).get("state") == "running")
    wait_loud(g, name)
    mic.assert_tone(url, 440, f"/{name} after replug")
    mic.stop()


def stream_tone(g, name, secs=2, pulls=3):
    """The frequency a stream carries (each emulated mic has its own tone, so
    this tells which physical mic a name is bound to). Up to `pulls` pulls: on
    the aarch64 guest under TCG on a slow host a pull of one of three mics
    plugged at once sometimes decoded digital silence or no steady tone (in 6
    of 9 runs here one pull did, the next was fine; once in 37 runs later:
    the right level with no zero crossings at all; not explained yet). Each
    such pull is printed window by window (level, mean, extremes, crossings)
    with what harkd's status and log said of the stream; it fails if no pull
    carries a mic's tone at its level."""
    wait_until(f"/{name} running", 20,
               lambda: device_streams(g).get(name, {}).get("state") == "running")
    for attempt in range(1, pulls + 1):
        pcm = ffmpeg_pull(f"rtsp://127.0.0.1:{g.rtsp_port}/{name}", secs)
        rep = tone_report(pcm)
        tone = round(rep["freq_hz"] / 100) * 100
        if abs(rep["level_dbfs"] - USB_MIC_RMS) <= 2 and tone > 0 \
                and abs(rep["freq_hz"] - tone) <= 0.02 * tone:
            return tone
        # What harkd saw of it: its meter and flags, and its log lines.
        status = device_streams(g).get(name)
        log = [l for l in g.sh("cat /tmp/harkd.log")[1].splitlines() if f'"{name}"' in l]
        print(f"hil: /{name}, pull {attempt} of {pulls}: {rep['level_dbfs']:.1f} dBFS RMS "
              f"(wanted {USB_MIC_RMS:.1f} ± 2), {rep['freq_hz']:.1f} Hz; harkd's status: "
              f"{status}; the pull, window by window:\n{pcm_sketch(pcm)}\n"
              f"harkd's log:\n" + "\n".join(log[-15:]), flush=True)
    raise HilError(f"/{name}: no pull of {pulls} carried a mic's tone at {USB_MIC_RMS:.1f} dBFS "
                   f"(last: {rep['level_dbfs']:.1f} dBFS RMS, {rep['freq_hz']:.1f} Hz)")


def names_by_tone(g, expected):
    """{tone: stream name} for the device streams, waiting for `expected` of them."""
    wait_until(f"{expected} device streams", 30, lambda: len(device_streams(g)) == expected)
    return {stream_tone(g, n): n for n in device_streams(g)}


def scenario_identity(artifacts):
    """Two identical mics without serials on ports 0 and 1 and a mic with a
    serial on port 2, present before harkd starts (coldplug). Then a reboot
    (a new guest, the state directory carried over), the twins plugged in the
    other order, the serial mic on port 3: every mic keeps its name."""
    twins = dict(serial=None, name="Twin Mic", vendor="1209", product="7777")
    g = Guest(artifacts, "identity-boot1")
    try:
        mics = [UsbMic(g, port=0, tone=500, **twins), UsbMic(g, port=1, tone=700, **twins),
                UsbMic(g, port=2, tone=900, serial="SER-123", name="Serial Mic")]
        wait_until("three USB cards", 20,
                   lambda: g.sh("grep -c USB-Audio /proc/asound/cards", check=False)[1].strip() == "3")
        start_harkd(g)
        first = names_by_tone(g, 3)
        print(f"hil: boot 1 (coldplug): {first}", flush=True)
        if len(set(first.values())) != 3:
            raise HilError(f"names collide: {first}")
        cards = g.sh("cat /proc/asound/cards")[1]
        for name in first.values():
            if f"[{name.replace('-', '_')[:15]}" not in cards.replace(" ", ""):
                raise HilError(f"card id of /{name} not pinned:\n{cards}")
        ledger = g.sh("cat /var/lib/hark/names.json")[1]
        for m in mics:
            m.stop()
    finally:
        g.close()

    g = Guest(artifacts, "identity-boot2")
    try:
        g.write("/var/lib/hark/names.json", ledger)
        start_harkd(g)
        mics = [UsbMic(g, port=1, tone=700, **twins)]
        wait_until("the first twin", 20, lambda: len(device_streams(g)) == 1)
        mics.append(UsbMic(g, port=0, tone=500, **twins))
        mics.append(UsbMic(g, port=3, tone=900, serial="SER-123", name="Serial Mic"))
        second = names_by_tone(g, 3)
        print(f"hil: boot 2 (hotplug, twins swapped, serial mic moved): {second}", flush=True)
        if second != first:
            raise HilError(f"names changed across the reboot: {first} -> {second}")
        for m in mics:
            m.stop()
    finally:
        g.close()


# The members' own streams are L16: what is tested is the group, and under TCG on
# a slow 2-core host their two Opus encoders took about a third of a guest CPU
# each, leaving the guest no idle time (1 % during a pull, measured from
# /proc/stat): the mics' capture then fell behind ("Can't record audio fast
# enough"), their queues ran dry and the group's channels carried the gaps.
# With L16 members the capture threads take about 8 % each.
GROUP_CONFIG = GUEST_CONFIG + """
[[device]]
name = "left"
serial = "GRP-L"
codec = "l16"

[[device]]
name = "right"
serial = "GRP-R"
codec = "l16"

[[group]]
name = "pair"
mode = "merge"
members = ["left", "right"]
codec = "l16"
"""


def group_members(g, name):
    """{member: present} of group `name`, from the status endpoint."""
    for s in g.http_json("/api/v1/status")["streams"]:
        if s["name"] == name and s.get("group"):
            return {m["name"]: m["present"] for m in s["group"]["members"]}
    return {}


def wait_group_steady(g, name, quiet=3.0, timeout=30):
    """Waits until no member of group `name` has run dry for `quiet` seconds: a
    USB mic just plugged into a TCG guest delivers in bursts for a moment (see
    usb-hotplug), and each burst that empties a member's queue deepens it."""
    def underruns():
        for s in g.http_json("/api/v1/status")["streams"]:
            if s["name"] == name and s.get("group"):
                return tuple(m["underruns"] for m in s["group"]["members"])
        return None
    last, since = underruns(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = underruns()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
    raise HilError(f"/{name}: members still running dry after {timeout} s: {last}")


def scenario_group_hotplug(g):
    """Two emulated USB mics in one merge group: each on its own channel, in
    member order; one unplugged and plugged back while a client plays the
    group: the stream never stops, the other mic's channel never misses a
    beat, and the unplugged mic's channel is silent, then its tone again."""
    start_harkd(g, GROUP_CONFIG)
    left = UsbMic(g, port=0, serial="GRP-L", name="Left Mic", tone=500)
    right = UsbMic(g, port=1, serial="GRP-R", name="Right Mic", tone=900)
    wait_until("both members in /pair", 40,
               lambda: group_members(g, "pair") == {"left": True, "right": True})
    url = f"rtsp://127.0.0.1:{g.rtsp_port}/pair"
    print(f"hil: /pair steady, underruns while the mics started: {wait_group_steady(g, 'pair')}",
          flush=True)
    for ch, freq in ((0, 500), (1, 900)):
        assert_tone(ffmpeg_pull(url, 3, channel=ch), freq, f"/pair channel {ch + 1}",
                    USB_MIC_RMS)
    pulled = {}
    client = threading.Thread(
        target=lambda: pulled.update(pcm=ffmpeg_pull(url, 14, timeout=40, channel=0)))
    client.start()
    time.sleep(3)
    t = time.monotonic()
    right.stop()
    wait_until("right gone from /pair", 15,
               lambda: group_members(g, "pair").get("right") is False)
    print(f"hil: right unplugged: absent from /pair in {time.monotonic() - t:.2f} s", flush=True)
    silent = tone_report(ffmpeg_pull(url, 1.5, channel=1))
    if silent["level_dbfs"] > -60:
        raise HilError(f"right's channel carries {silent['level_dbfs']:.1f} dBFS while unplugged")
    t = time.monotonic()
    right = UsbMic(g, port=1, serial="GRP-R", name="Right Mic", tone=900)
    wait_until("right back in /pair", 30,
               lambda: group_members(g, "pair").get("right") is True)
    print(f"hil: right plugged back: in /pair again in {time.monotonic() - t:.2f} s", flush=True)
    client.join(60)
    wait_group_steady(g, "pair")
    # left's channel, through the unplug and the replug: its tone throughout,
    # and no gap of 200 ms. (Under TCG the replug's enumeration and probing can
    # hold the guest long enough for left's 40 ms queue to run dry once or
    # twice: a gap of under 100 ms each, after which its queue is deeper.)
    pcm = pulled.get("pcm", b"")
    gap = longest_gap_ms(pcm)
    r = audiocheck(pcm, "--seconds", 13.5, "--freq", 500, "--level", USB_MIC_RMS,
                   "--max-disturbed", 4)
    left_st = [m for s in g.http_json("/api/v1/status")["streams"] if s["name"] == "pair"
               for m in s["group"]["members"] if m["name"] == "left"][0]
    print(f"hil: /pair channel 1 while right left and came back: {r.stdout.decode().strip()}; "
          f"longest gap {gap:.0f} ms; left's underruns {left_st['underruns']}, "
          f"its queue target {left_st['target_ms']:.0f} ms", flush=True)
    if r.returncode != 0:
        raise HilError(f"/pair channel 1: {r.stderr.decode(errors='replace').strip()}")
    if gap >= 200:
        raise HilError(f"/pair channel 1 had a gap of {gap:.0f} ms while right left and came back")
    assert_tone(ffmpeg_pull(url, 3, channel=1), 900, "/pair channel 2 after the replug",
                USB_MIC_RMS)
    st = [s for s in g.http_json("/api/v1/status")["streams"] if s["name"] == "pair"][0]
    if st["restarts"] != 0 or st["state"] != "running":
        raise HilError(f"/pair restarted or stopped: {st}")
    print(f"hil: /pair members {st['group']['members']}", flush=True)
    left.stop()
    right.stop()


def scenario_playback_only(g):
    """QEMU's own usb-audio (playback only) hot-plugged through the monitor: a
    real USB sound card with no capture, seen and ignored with a reason."""
    start_harkd(g)
    out = g.monitor("device_add usb-audio,id=ua1,audiodev=snd0,bus=xhci.0")
    if "Error" in out:
        raise HilError(f"device_add failed: {out}")

    def seen():
        devs = g.http_json("/api/v1/status")["devices"]
        return [d for d in devs if d.get("vendor_product") == "46f4:0002"] or None
    dev = wait_until("the usb-audio card in harkd's devices", 20, seen)[0]
    print(f"hil: playback-only card: status {dev['status']!r}, reason {dev['reason']!r}",
          flush=True)
    if dev["status"] == "streaming" or not dev.get("reason"):
        raise HilError(f"a playback-only card was not ignored with a reason: {dev}")
    if device_streams(g):
        raise HilError(f"a stream was started for it: {device_streams(g)}")


def guest_clock_offset(g):
    """host monotonic - guest monotonic, in seconds, and its uncertainty."""
    best = None
    for _ in range(5):
        t0 = time.monotonic()
        out = g.sh("grep -m1 'now at' /proc/timer_list")[1]
        t1 = time.monotonic()
        guest = int(out.split()[2]) / 1e9
        if best is None or t1 - t0 < best[1]:
            best = ((t0 + t1) / 2 - guest, t1 - t0)
    return best[0], best[1] / 2


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def timeline(g, which):
    """harkd's own log of the plugs in `which` (0 = the first since it started):
    each message from the device's udev event to the first client, in ms after
    the first of them, so a slow first plug shows where it is slow."""
    events = []
    for line in g.sh("cat /tmp/harkd.log")[1].splitlines():
        try:
            v = json.loads(line)
            t = datetime.datetime.fromisoformat(v["timestamp"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        events.append((t, v))
    warm = [f"{v['message']} in {v['took_ms']} ms" for _, v in events
            if v.get("message") in ("media warmed up", "RTSP warmed up") and "took_ms" in v]
    warm += [f"{v['message']} in {v['took_us'] / 1000:.1f} ms ({v.get('outcome')})" for _, v in events
             if v.get("message") == "device path rehearsed" and "took_us" in v]
    print(f"hil: harkd's warm-up before READY: {'; '.join(warm) or 'not logged'}", flush=True)
    plugs, cur = [], None
    for t, v in events:
        msg = v.get("message", "")
        if cur is None and ("uevent" in msg or msg == "device added"):
            cur = []
        if cur is not None:
            extra = f"{v['waited_ms']} ms waited" if "waited_ms" in v else ""
            cur.append((t, msg, v.get("stream") or v.get("name") or extra))
            if msg == "clients changed" and v.get("clients") == 1:
                plugs.append(cur)
                cur = None
    for i in which:
        if i < len(plugs):
            t0 = plugs[i][0][0]
            print(f"hil: plug {i}, harkd's log: " + "; ".join(
                f"+{(t - t0) * 1000:.0f} {m}{' ' + n if n else ''}" for t, m, n in plugs[i]), flush=True)


def plug_to_play(g, i, port, adds_before):
    """Plugs the latency mic into `port` and waits for its stream to answer PLAY
    (a host client through the forwarded port); returns (kernel add uevent ->
    PLAY, kernel -> udevd's event or None) and leaves it plugged in."""
    mic = UsbMic(g, serial="LAT0001", name="Latency Mic", port=port)
    name = None
    deadline = time.monotonic() + 15
    while True:
        if time.monotonic() > deadline:
            raise HilError(f"plug {i}: no PLAY within 15 s")
        if name is None:
            names = list(device_streams(g))
            name = names[0] if names else None
        if name is not None:
            try:
                if rtsp_play(g.rtsp_port, name):
                    played = time.monotonic()
                    break
            except (OSError, HilError, ValueError):
                pass
        time.sleep(0.01)
    offset, err = guest_clock_offset(g)
    log = g.sh("cat /tmp/uevents.log")[1]

    def card_adds(side):
        return [float(l.split("[")[1].split("]")[0]) for l in log.splitlines()
                if "[" in l and l.split("[")[0].strip() == side and " add " in l and l.rstrip().endswith("(sound)")
                and "/sound/card" in l and "/controlC" not in l and "/pcm" not in l]
    adds, udev_adds = card_adds("KERNEL"), card_adds("UDEV")
    if len(adds) != adds_before + 1:
        raise HilError(f"plug {i}: {len(adds) - adds_before} card add uevents seen:\n{log}")
    in_udev = udev_adds[-1] - adds[-1] if len(udev_adds) == len(adds) else None
    return mic, played - (adds[-1] + offset), in_udev, err


def scenario_hotplug_latency(g, plugs=20):
    """Plug the same mic 20 times: from the kernel's add uevent for its sound
    card (as udev's monitor saw it in the guest) to harkd's stream answering
    PLAY (a host client through the forwarded port). Target: under 1 s. The mic
    is known (named) before: it is plugged in once first, as a never-seen mic
    (its name written to the ledger), and harkd is restarted, so that the first
    of the 20 is the first device since harkd started, as after a reboot."""
    g.sh("udevadm monitor --kernel --udev --subsystem-match=sound > /tmp/uevents.log 2>&1 &")
    start_harkd(g)
    time.sleep(0.5)
    mic, new_mic, _, _ = plug_to_play(g, "new", 0, 0)
    mic.stop()
    wait_until("the new mic's stream removed", 10, lambda: not device_streams(g))
    g.sh("kill $(pidof harkd)")
    wait_until("harkd stopped", 15, lambda: not harkd_alive(g))
    start_harkd(g)
    time.sleep(0.5)
    before = harkd_memory(g)
    latencies, in_udev, rss = [], [], []
    for i in range(plugs):
        mic, latency, udev, err = plug_to_play(g, i, i % 4, i + 1)
        latencies.append(latency)
        if udev is not None:
            in_udev.append(udev)
        mic.stop()
        wait_until(f"plug {i}: stream removed", 10, lambda: not device_streams(g))
        rss.append(harkd_memory(g)["VmRSS"])
    after = harkd_memory(g)
    print(f"hil: harkd RSS {before['VmRSS'] / 1024:.1f} MiB serving the test tone, "
          f"{after['VmRSS'] / 1024:.1f} MiB after {plugs} plugs and unplugs "
          f"(peak {after['VmHWM'] / 1024:.1f} MiB); after each unplug (KiB): {rss}", flush=True)
    print(f"hil: a never-seen mic (named, ledger written) before the restart: "
          f"{new_mic * 1000:.0f} ms", flush=True)
    print(f"hil: hotplug latency per plug (ms; the first is the first device since harkd "
          f"started): {[round(x * 1000) for x in latencies]}", flush=True)
    timeline(g, (0, 1, plugs // 2))
    if len(in_udev) == plugs:
        print(f"hil: of which in udevd (kernel uevent -> udev event, before harkd hears of it; "
              f"ms): {[round(x * 1000) for x in in_udev]}", flush=True)
    print(f"hil: hotplug latency, add uevent -> PLAY answered, {plugs} plugs: "
          f"p50 {percentile(latencies, 50) * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms (clock offset uncertainty +/-{err * 1000:.0f} ms)",
          flush=True)
    if percentile(latencies, 95) >= 1.0:
        raise HilError(f"p95 hotplug latency {percentile(latencies, 95):.2f} s is not under 1 s")


FIXTURES = os.path.join(HERE, "..", "agent", "tests", "fixtures")
# Fixture trees captured from the guest kernel (Debian's 6.1 kernel, its
# snd-usb-audio enumerating hark-usbip-mic devices), used by agent/tests/probe.rs.
TREES = {
    "qemu-usb-mics": [
        dict(port=0, serial="HIL-A1B2", name="Field Mic", rates="44100,48000,96000"),
        dict(port=1, serial=None, name="USB Audio Device", product="7777"),
        dict(port=2, serial=None, name="USB Audio Device", product="7777"),
        dict(port=3, serial="8I8-0001", name="Eight Input", channels=8, product="0808"),
    ],
    "qemu-bat-mic": [
        dict(port=0, serial="BAT-384", name="Bat Detector", rates="384000", product="0384"),
    ],
    # A CM108-style adapter: C-Media's ids and strings, no serial, 44.1/48 kHz
    # (capture only: the emulator has no playback interface).
    "qemu-cm108": [
        dict(port=0, serial=None, vendor="0d8c", product="0014",
             manufacturer="C-Media Electronics Inc.", name="USB PnP Sound Device",
             rates="48000,44100"),
    ],
}
# Onboard audio: QEMU's AC'97 controller, driven by the guest's snd-intel8x0 (a
# PCI card, which harkd ignores by default). (QEMU's intel-hda was tried first:
# under TCG the guest's snd-hda-intel gives up probing its codec.)
ONBOARD = ["-device", "AC97,audiodev=snd0"]


def read_tree(root):
    files = {}
    for dirpath, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                files[rel] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    files[rel] = f.read()
            elif not os.listdir(p):
                files[rel] = "<empty dir>"
    return files


def capture_tree(g, tree, update):
    g.sh(f"rm -rf /tmp/{tree} && capture-tree /tmp/{tree}")
    raw = base64.b64decode(g.sh(f"tar -C /tmp -cf - {tree} | base64")[1])
    got_dir = os.path.join(g.dir, "captured")
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        t.extractall(got_dir)
    got = read_tree(os.path.join(got_dir, tree))
    want_dir = os.path.join(FIXTURES, tree)
    if update:
        shutil.rmtree(want_dir, ignore_errors=True)
        shutil.copytree(os.path.join(got_dir, tree), want_dir, symlinks=True)
        print(f"hil: {tree}: fixture rewritten ({len(got)} entries)", flush=True)
        return
    want = read_tree(want_dir)
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        raise HilError(f"{tree}: the kernel's tree differs from the fixture in {diff[:10]}")
    print(f"hil: {tree}: the kernel's tree matches the fixture ({len(got)} entries)",
          flush=True)


def scenario_real_trees(artifacts):
    """What the real kernel shows for USB mics (a mic with a serial and three
    rates, serial-less twins, an 8-input device, a 384 kHz mic) is captured
    and compared with the committed fixture trees the probe tests use; with
    HIL_UPDATE_FIXTURES=1 the fixtures are rewritten instead."""
    update = os.environ.get("HIL_UPDATE_FIXTURES") == "1"
    g = Guest(artifacts, "real-trees")
    for tree, specs in TREES.items():
        mics = []
        for i, spec in enumerate(specs):
            mics.append(UsbMic(g, **spec))
            wait_until(f"{tree}: card {i}", 20, lambda: g.sh(
                "grep -c USB-Audio /proc/asound/cards", check=False)[1].strip() == str(i + 1))
        capture_tree(g, tree, update)
        for m in mics:
            m.stop()
        wait_until(f"{tree}: cards gone", 10, lambda: g.sh(
            "grep -c USB-Audio /proc/asound/cards", check=False)[1].strip() == "0")
    g.close()
    if is_aarch64(artifacts):
        # Said, not skipped silently: the USB trees above are the ones that
        # matter on a Raspberry Pi; the onboard fixture is an x86 PC's card.
        print("hil: qemu-onboard: compared on x86_64 only (QEMU's AC'97 is a PC card; "
              "Debian's arm64 kernel has no snd-intel8x0 to drive it)", flush=True)
        if update:
            raise FixturesUpdated(f"rewrote {', '.join(TREES)} under {FIXTURES}; nothing "
                                  "was compared: review them with git diff")
        return
    g = Guest(artifacts, "real-trees-onboard", extra=ONBOARD)
    wait_until("the AC'97 card", 30, lambda: "ICH" in g.sh("cat /proc/asound/cards")[1])
    capture_tree(g, "qemu-onboard", update)
    if update:
        raise FixturesUpdated(f"rewrote {', '.join([*TREES, 'qemu-onboard'])} under {FIXTURES}; "
                              "nothing was compared: review them with git diff")


SCENARIOS = {
    # name: (function, time bound in s, what it is given)
    "aloop-hotplug": (scenario_aloop_hotplug, 240, "fast"),
    "aloop-rates": (scenario_aloop_rates, 240, "fast"),
    "usb-hotplug": (scenario_usb_hotplug, 240, "fast"),
    "playback-only": (scenario_playback_only, 120, "fast"),
    "identity": (scenario_identity, 300, "fast-artifacts"),
    "hotplug-latency": (scenario_hotplug_latency, 400, "fast"),
    "group-hotplug": (scenario_group_hotplug, 300, "fast"),
    "real-trees": (scenario_real_trees, 300, "fast-artifacts"),
}

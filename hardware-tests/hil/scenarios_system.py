"""The system tier's scenarios: Debian with systemd as PID 1, harkd installed as
the README says."""

import threading
import time

from .agent import agent_prop, bus_streams, harkd_memory, unit_props, wait_active
from .audio import TEST_TONE_RMS, assert_tone, ffmpeg_pull
from .common import HilError, wait_until
from .guest import boot_system
from .mic import UsbMic


def batch_threads(g, pid):
    """The names of harkd's threads running SCHED_BATCH (policy 3)."""
    out = g.sh(f"grep -H '^policy' /proc/{pid}/task/*/sched", check=False)[1]
    tids = [line.split("/")[4] for line in out.splitlines() if line.split(":")[-1].strip() == "3"]
    return [g.sh(f"cat /proc/{pid}/task/{t}/comm", check=False)[1].strip() for t in tids]


def scenario_system_service(system_dir):
    """harkd under systemd as installed: active with STATUS=, runs as user hark
    under the hardened unit and still serves audio, the D-Bus policy on the real
    system bus (root may call, nobody may only read), and a USB mic's card id
    pinned by the unprivileged agent through the udev rule."""
    g = boot_system(system_dir, "system-service")
    # Audio is judged once the boot has finished: under a CPU hog the boot's
    # own jobs starve the TCG guest for seconds, and a client that falls 0.5 s
    # behind loses its oldest audio by design (media/fanout.rs), which would
    # judge the rig, not the agent (a pull during the boot decoded 0.96 s of 3).
    t = time.monotonic()
    state = g.sh("systemctl is-system-running --wait", timeout=120, check=False)[1].strip()
    print(f"hil: boot finished ({state}) {time.monotonic() - t:.1f} s after the control "
          "channel was ready", flush=True)
    wait_active(g)
    wait_until("STATUS= in systemctl", 30,
               lambda: "1 stream running" in unit_props(g, "StatusText")["StatusText"])
    p = unit_props(g, "Type", "NotifyAccess", "WatchdogUSec", "MainPID", "StatusText")
    print(f"hil: harkd.service {p}", flush=True)
    if p["Type"] != "notify":
        raise HilError(f"unit type {p['Type']}")
    user = g.sh(f"ps -o user= -p {p['MainPID']}")[1].strip()
    if user != "hark":
        raise HilError(f"harkd runs as {user!r}, not hark")
    # The pull also shows that delivery runs SCHED_BATCH under the hardened
    # unit (it allows sched_setscheduler back out of the @resources it denies):
    # the client's threads are read while it plays.
    pulled = {}

    def pull():
        try:
            pulled["pcm"] = ffmpeg_pull(f"rtsp://127.0.0.1:{g.rtsp_port}/test-tone", 3)
        except Exception as e:  # re-raised below, on this thread
            pulled["error"] = e

    puller = threading.Thread(target=pull)
    puller.start()
    try:
        # Stops waiting when the pull failed: that is the error to report.
        batch = wait_until("a SCHED_BATCH delivery thread in harkd while a client plays", 20,
                           lambda: batch_threads(g, p["MainPID"]) or ("error" in pulled))
    finally:
        puller.join()
    if "error" in pulled:
        raise pulled["error"]
    assert_tone(pulled["pcm"], 440, "/test-tone from the hardened unit", TEST_TONE_RMS)
    refused = g.sh("journalctl -u harkd -o cat | grep -c 'sched_setscheduler refused'",
                   check=False)[1].strip()
    print(f"hil: with a client playing, SCHED_BATCH threads {batch}; "
          f"'refused' warnings in the journal: {refused}", flush=True)
    if refused != "0":
        raise HilError("harkd was refused sched_setscheduler under its unit")

    rc, out = g.sh("busctl introspect org.hark.Agent1 /org/hark/Agent1")
    for want in (".RestartStream", ".Reload", ".DeadmanState", ".StreamCount"):
        if want not in out:
            raise HilError(f"introspect lacks {want}:\n{out}")
    rc, out = agent_prop(g, "StreamCount", as_nobody=True)
    if rc != 0 or out.strip() != "u 1":
        raise HilError(f"nobody cannot read StreamCount: {rc} {out}")
    for method in ("Reload", "RestartStream s test-tone"):
        rc, out = g.sh("setpriv --reuid=65534 --regid=65534 --clear-groups busctl call "
                       f"org.hark.Agent1 /org/hark/Agent1 org.hark.Agent1 {method}", check=False)
        if rc == 0 or "Access denied" not in out:
            raise HilError(f"nobody was not denied {method}: {rc} {out}")
    g.sh("busctl call org.hark.Agent1 /org/hark/Agent1 org.hark.Agent1 RestartStream s test-tone")
    print("hil: D-Bus policy: nobody reads and is denied Reload/RestartStream; root calls",
          flush=True)

    mic = UsbMic(g, serial="SYS-0001", name="System Mic", tone=1000)
    streams = wait_until("the USB mic on D-Bus", 60, lambda: {
        n: v for n, v in bus_streams(g).items() if v.get("Card", -1) >= 0} or None)
    name, props = next(iter(streams.items()))
    card_id = g.sh(f"cat /proc/asound/card{props['Card']}/id")[1].strip()
    perms = g.sh(f"stat -c '%U:%G %A' /sys/class/sound/card{props['Card']}/id")[1].strip()
    print(f"hil: /{name}: card id {card_id!r} ({perms}), pinned by user hark", flush=True)
    if card_id != name.replace("-", "_")[:15]:
        raise HilError(f"card id {card_id!r} not pinned to /{name} (id file {perms})")
    mic.assert_tone(f"rtsp://127.0.0.1:{g.rtsp_port}/{name}", 1000, f"/{name}")
    mem = harkd_memory(g, p["MainPID"])
    print(f"hil: harkd RSS under systemd, the test tone and /{name} streaming: "
          f"{mem['VmRSS'] / 1024:.1f} MiB (peak {mem['VmHWM'] / 1024:.1f} MiB)", flush=True)
    mic.stop()
    wait_until(f"/{name}'s D-Bus object removed", 20, lambda: name not in bus_streams(g))
    print(f"hil: unplugged: /{name} gone from the system bus", flush=True)


def scenario_system_watchdog(system_dir):
    """The watchdog on a real systemd: the GStreamer thread, then the supervisor
    loop, wedged on purpose (test hooks); systemd kills the agent and starts it
    again each time."""
    g = boot_system(system_dir, "system-watchdog")
    wait_active(g)
    g.write("/etc/systemd/system/harkd.service.d/hil.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/harkd run --config /etc/hark/hark.toml "
            "--test-hooks\nWatchdogSec=6s\n")
    g.sh("systemctl daemon-reload && systemctl restart harkd")
    wait_active(g)
    for sig, part in (("USR1", "GStreamer thread"), ("USR2", "supervisor loop")):
        wait_until("STATUS=", 30,
                   lambda: "stream running" in unit_props(g, "StatusText")["StatusText"])
        before = unit_props(g, "MainPID", "NRestarts")
        t = time.monotonic()
        g.sh(f"kill -{sig} {before['MainPID']}")
        wait_until(f"a restart after wedging the {part}", 60, lambda: (
            (p := unit_props(g, "MainPID", "NRestarts", "ActiveState"))["NRestarts"]
            != before["NRestarts"] and p["MainPID"] not in ("0", before["MainPID"])
            and p["ActiveState"] == "active"))
        print(f"hil: {part} wedged: killed by the watchdog and running again in "
              f"{time.monotonic() - t:.1f} s (WatchdogSec=6s)", flush=True)
    log = g.sh("journalctl -u harkd --no-pager")[1]
    if log.count("Watchdog timeout") < 2:
        raise HilError(f"the journal does not show two watchdog timeouts:\n{log[-3000:]}")


DEADMAN_CONFIG = """
[rtsp]
port = 8554

[devices]
enabled = false

[deadman]
enabled = true
max_reboots = 2
window_s = 3600
min_spacing_s = 5
unhealthy_after_s = 5

# A stream that can never run: the agent exits 4 and the deadman decides.
[[stream]]
name = "gone"
source = "alsa"
device = "hw:CARD=NoSuchCard"
"""


def scenario_system_deadman(system_dir):
    """A board whose only stream can never run, with the deadman allowing 2
    reboots an hour: the agent exits 4, harkd-deadman.service reboots through
    logind (QEMU started with -no-reboot exits, and the runner boots the same
    disk again), twice; on the third boot the ledger refuses, the board stays
    up, and D-Bus says so."""
    g = boot_system(system_dir, "system-deadman")
    wait_active(g)
    g.write("/etc/hark/hark.toml", DEADMAN_CONFIG)
    out = g.sh("harkd deadman mark-good")[1]
    print(f"hil: boot 1: {out.strip()}", flush=True)
    g.sh("systemctl restart harkd")
    boots, reboots = 1, 0
    while True:
        # Each boot ends in a reboot (QEMU exits), or the agent stays up refusing.
        deadline = time.monotonic() + 180
        refusing = False
        while time.monotonic() < deadline:
            if g.wait_exit(2):
                break
            try:
                state = agent_prop(g, "DeadmanState")[1].strip()
            except (HilError, OSError):
                # The reboot can cut the control channel mid-command.
                if g.wait_exit(30):
                    break
                raise
            if state == 's "refusing"':
                refusing = True
                break
        else:
            raise HilError(f"boot {boots}: neither a reboot nor a refusal within 180 s")
        if refusing:
            # And it stays that way: no reboot in the next 20 s.
            if g.wait_exit(20):
                raise HilError(f"boot {boots} rebooted after refusing")
            break
        reboots += 1
        print(f"hil: boot {boots} ended in a reboot ({reboots} so far)", flush=True)
        if reboots > 2:
            raise HilError("more reboots than the cap")
        g = boot_system(system_dir, f"system-deadman-boot{boots + 1}", disk=g.disk)
        boots += 1
    state = agent_prop(g, "DeadmanState")[1].strip()
    status = g.sh("harkd deadman status")[1]
    print(f"hil: boot {boots}: stays up; DeadmanState {state}\n{status}", flush=True)
    if reboots != 2 or boots != 3:
        raise HilError(f"{boots} boots and {reboots} reboots; wanted 3 and 2")
    if state != 's "refusing"':
        raise HilError(f"DeadmanState is {state}")
    if "reboots in window: 2" not in status or "a reboot now: refused" not in status:
        raise HilError(f"unexpected ledger status:\n{status}")


SCENARIOS = {
    # name: (function, time bound in s, what it is given)
    "system-service": (scenario_system_service, 400, "system"),
    "system-watchdog": (scenario_system_watchdog, 400, "system"),
    "system-deadman": (scenario_system_deadman, 900, "system"),
}

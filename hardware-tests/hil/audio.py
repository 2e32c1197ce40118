"""Audio seen from the host: streams pulled and decoded by ffmpeg, checked by
the shared analysis (hark-audiocheck), and a minimal RTSP client."""

import json
import math
import os
import socket
import struct
import subprocess

from .common import HERE, HilError


# The one tone analysis every tier shares (tools/audiocheck, built by `make
# build` with the rest of the workspace): duration, level, frequency, continuity.
AUDIOCHECK = os.environ.get(
    "HARK_AUDIOCHECK", os.path.join(HERE, "..", "target", "release", "hark-audiocheck"))

# Expected RMS levels of the tones the scenarios send (a sine's RMS is 3 dB under
# its peak): the guest's gst-launch player at volume 0.25 (-12 dBFS peak), the
# emulated USB mic at amplitude 0.5 (-6 dBFS), the shipped test tone (-20 dBFS).
PLAYER_RMS = -15.05
USB_MIC_RMS = -9.03
TEST_TONE_RMS = -23.0


def ffmpeg_pull(url, seconds, timeout=30, channel=None):
    """Decodes `seconds` of a stream to mono 48 kHz S16LE (channel `channel`
    alone, 0-based, when given); returns the bytes."""
    pick = ["-af", f"pan=mono|c0=c{channel}"] if channel is not None else []
    r = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
         "-timeout", "10000000", "-i", url, "-t", str(seconds), *pick,
         "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise HilError(f"ffmpeg failed on {url}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def audiocheck(pcm, *args):
    r = subprocess.run([AUDIOCHECK, "--rate", "48000", "--channels", "1", *map(str, args)],
                       input=pcm, capture_output=True, timeout=30)
    if r.returncode not in (0, 1):
        raise HilError(f"hark-audiocheck: {r.stderr.decode(errors='replace').strip()}")
    return r


def assert_tone(pcm, freq, what, level, seconds=2.9):
    """The tone at `freq` Hz and `level` dBFS RMS (±2 dB), at least `seconds`
    long, with at most one disturbed 250 ms window (hark-audiocheck's rules)."""
    r = audiocheck(pcm, "--seconds", seconds, "--freq", freq, "--level", level)
    print(f"hil: {what}: {r.stdout.decode().strip()}", flush=True)
    if r.returncode != 0:
        raise HilError(f"{what}: {r.stderr.decode(errors='replace').strip()}")


def longest_gap_ms(pcm, floor=1000):
    """The longest run of samples under `floor` (of 32767) in mono S16LE 48 kHz
    `pcm`, in ms: a tone passes through that band in a sample or two at each
    zero crossing; a dropout stays in it."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm[:len(pcm) // 2 * 2])
    longest = run = 0
    for x in samples:
        if -floor < x < floor:
            run += 1
            if run > longest:
                longest = run
        else:
            run = 0
    return longest / 48.0


def pcm_sketch(pcm, rate=48000, window_s=0.25):
    """Mono S16LE `pcm` window by window, one line each: RMS (dBFS), mean (DC),
    lowest and highest sample, rising zero crossings. Tells a decoded tone from
    digital silence, a constant, clipping or noise, where a summary cannot."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm[:len(pcm) // 2 * 2])
    n = int(rate * window_s)
    lines = []
    for start in range(0, len(samples) - n + 1, n):
        w = samples[start:start + n]
        power = sum(x * x for x in w) / n / 32768.0 ** 2
        rms = 10 * math.log10(power) if power > 0 else -200.0
        ups = sum(1 for a, b in zip(w, w[1:]) if a < 0 <= b)
        lines.append(f"{start / rate:5.2f} s: {rms:7.1f} dBFS, mean {sum(w) / n:8.1f}, "
                     f"min {min(w):6d}, max {max(w):6d}, {ups} rising crossings")
    return "\n".join(lines)


def tone_report(pcm):
    """{seconds, level_dbfs, freq_hz, windows} of a decoded tone, no verdict."""
    return json.loads(audiocheck(pcm, "--report").stdout)


# --- a minimal RTSP client -------------------------------------------------------


def rtsp_play(port, path, timeout=2.0):
    """DESCRIBE, SETUP (interleaved TCP) and PLAY; True when PLAY is answered 200."""
    url = f"rtsp://127.0.0.1:{port}/{path}"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        buf = b""

        def request(method, target, cseq, headers=""):
            nonlocal buf
            s.sendall(f"{method} {target} RTSP/1.0\r\nCSeq: {cseq}\r\n{headers}\r\n".encode())
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise HilError("connection closed")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode(errors="replace").split("\r\n")
            status = int(lines[0].split()[1])
            hdrs = {k.strip().lower(): v.strip()
                    for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            length = int(hdrs.get("content-length", "0"))
            while len(buf) < length:
                buf += s.recv(4096)
            body, buf = buf[:length], buf[length:]
            return status, hdrs, body.decode(errors="replace")

        status, _, sdp = request("DESCRIBE", url, 1, "Accept: application/sdp\r\n")
        if status != 200:
            return False
        control = next((l.split(":", 1)[1].strip() for l in sdp.splitlines()
                        if l.startswith("a=control:") and l.strip() != "a=control:*"), "stream=0")
        track = control if control.startswith("rtsp://") else f"{url}/{control}"
        status, hdrs, _ = request("SETUP", track, 2,
                                  "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
        if status != 200:
            return False
        session = hdrs.get("session", "").split(";")[0]
        status, _, _ = request("PLAY", url, 3, f"Session: {session}\r\n")
        return status == 200

#!/usr/bin/env bash
# The cross-built harkd (make build-aarch64) checked on this x86_64 host: both
# programs are aarch64 ELF files that need only libraries of the arm64 tree;
# harkd, run under qemu-user (qemu-aarch64 -L <arm64 tree>, its GStreamer
# plugins the arm64 ones), validates the shipped config and serves the built-in
# test tone, which the host's ffmpeg decodes and the shared tone analysis
# (hark-audiocheck) judges; SIGTERM ends it cleanly. The kernel side (ALSA, USB,
# udev on an arm64 kernel) is the aarch64 hardware-test tier's job.
#
# usage: scripts/check-aarch64.sh     (after make build and make build-aarch64)
set -euo pipefail
repo=$(dirname "$(dirname "$(realpath "$0")")")
cd "$repo"
bin=${CHECK_AARCH64_BIN:-target/aarch64-unknown-linux-gnu/release}
audiocheck=target/release/hark-audiocheck
sysroot=$(scripts/cross-aarch64.sh --sysroot)   # also installs qemu-user
fail() { echo "check-aarch64: FAIL: $*" >&2; exit 1; }

for f in "$bin/harkd" "$bin/hark-usbip-mic"; do
    [ -x "$f" ] || fail "$f is missing (make build-aarch64)"
    readelf -hW "$f" | grep -q "Machine:.*AArch64" || fail "$f is not an aarch64 program"
    for lib in $(readelf -dW "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -e "$sysroot/usr/lib/aarch64-linux-gnu/$lib" ] || [ -e "$sysroot/lib/aarch64-linux-gnu/$lib" ] ||
            fail "$f needs $lib, which the arm64 tree does not have"
    done
done
echo "check-aarch64: $bin/harkd and hark-usbip-mic are aarch64 programs whose libraries the arm64 tree has"

run() { qemu-aarch64 -L "$sysroot" "$@"; }
run "$bin/harkd" --version
run "$bin/harkd" check-config configs/hark.toml >/dev/null || fail "harkd check-config configs/hark.toml"

work=$(mktemp -d)
pid=
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rtsp=$(port)
http=$(port)
sed "s/^port = 8554$/port = $rtsp/" configs/dev.toml > "$work/hark.toml"
grep -q "port = $rtsp" "$work/hark.toml" || fail "configs/dev.toml has no 'port = 8554' line to replace"
printf '\n[http]\nlisten = "127.0.0.1:%s"\n' "$http" >> "$work/hark.toml"
# In-process plugin scan: the scanner helper is an arm64 program that the
# kernel cannot start without binfmt_misc.
GST_REGISTRY_FORK=no GST_REGISTRY="$work/registry.bin" \
    GST_PLUGIN_SYSTEM_PATH="$sysroot/usr/lib/aarch64-linux-gnu/gstreamer-1.0" \
    qemu-aarch64 -L "$sysroot" "$bin/harkd" run --config "$work/hark.toml" --bus none \
    > "$work/harkd.log" 2>&1 &
pid=$!
t=$SECONDS
healthy() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://127.0.0.1:$http/healthz" 2>/dev/null
}
until healthy; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/harkd.log" >&2; fail "harkd exited before it was healthy"; }
    [ $((SECONDS - t)) -lt 60 ] || { cat "$work/harkd.log" >&2; fail "harkd not healthy within 60 s"; }
    sleep 0.5
done
echo "check-aarch64: harkd (aarch64, under qemu-user) healthy after $((SECONDS - t)) s"
timeout 30 ffmpeg -nostdin -loglevel error -rtsp_transport tcp -timeout 10000000 \
    -i "rtsp://127.0.0.1:$rtsp/test-tone" -t 3 -f s16le -ac 1 -ar 48000 - > "$work/tone.pcm" ||
    fail "ffmpeg could not pull the test tone"
# configs/dev.toml: a 440 Hz tone at -20 dBFS peak (-23 dBFS RMS).
"$audiocheck" --rate 48000 --channels 1 --seconds 2.9 --freq 440 --level -23 < "$work/tone.pcm" ||
    fail "the test tone served by the aarch64 harkd is not the tone configured"
kill -TERM "$pid"
t=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
    [ $((SECONDS - t)) -lt 15 ] || fail "harkd did not exit within 15 s of SIGTERM"
    sleep 0.2
done
wait "$pid" || fail "harkd exited with status $? after SIGTERM"
pid=
echo "check-aarch64: the aarch64 harkd served the test tone and exited cleanly on SIGTERM"

# The check can fail: handed this host's own (x86_64) build, it must refuse it.
if [ -z "${CHECK_AARCH64_BIN:-}" ]; then
    if out=$(CHECK_AARCH64_BIN=target/release "$0" 2>&1); then
        fail "negative test: the x86_64 build passed as an aarch64 one"
    fi
    grep -q "is not an aarch64 program" <<<"$out" || fail "negative test: unexpected failure: $out"
    echo "check-aarch64: negative test: the x86_64 build is refused, as it must be"
fi
echo "check-aarch64: PASS"

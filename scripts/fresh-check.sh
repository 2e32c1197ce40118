#!/usr/bin/env bash
# `make fresh-check`: the README's two commands on a fresh Debian 12 machine.
#
# A minimal Debian 12 root (debootstrap minbase, plus only what the README asks a
# user to have: git, make, curl; cached by scripts/debian-root.sh, shared with the
# hardware tests' system tier) gets a clone of this repository's HEAD, and the
# host's Rust toolchain mounted read-only where rustup would have put one. Then,
# inside it, as a new user would:
#
#   1. the negative check: install-deps.sh with its C toolchain line taken out
#      must make `make build` fail with cargo's "linker `cc` not found" (so this
#      check can fail, and the line it removes is the one that matters);
#   2. `make build` with the real install-deps.sh;
#   3. `make test TEST_ARGS=--no-run`: lint and every test binary built;
#   4. `make run` in a network namespace of its own (loopback only), and ffmpeg
#      pulls rtsp://127.0.0.1:8554/test-tone and decodes a 440 Hz tone that is
#      at its level, for 3 s unbroken (hark-audiocheck, as every test tier).
#
# Needs root (debootstrap, chroot, namespaces). Everything it mounts lives in a
# mount namespace of its own and is gone when it ends.
#
#   FRESH_DIR       work directory (default: target/fresh)
#   FRESH_REF       what to clone (default: HEAD; the check sees what is committed)
#   FRESH_FULL_TEST=1  step 3 runs the whole `make test` in the root, not only its
#                   build (finds a tool or plugin only the tests need; about as
#                   long as `make test` itself, so not in CI, which runs the tests
#                   on the host)
set -euo pipefail

repo=$(dirname "$(dirname "$(realpath "$0")")")
work=$(realpath -m "${FRESH_DIR:-$repo/target/fresh}")
ref=${FRESH_REF:-HEAD}
root="$work/root"
started=$SECONDS

say() { echo "fresh-check: $* ($((SECONDS - started)) s)" >&2; }
fail() { echo "fresh-check: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot and namespaces)"
sysroot=$(rustc --print sysroot) || fail "no Rust toolchain on the host (rustc)"
[ -x "$sysroot/bin/cargo" ] || fail "$sysroot/bin/cargo missing: the host's toolchain is not a rustup-style one"
for t in cargo-clippy cargo-fmt; do
    [ -x "$sysroot/bin/$t" ] || fail "$sysroot/bin/$t missing: 'rustup component add clippy rustfmt'"
done

# --- the fresh root ------------------------------------------------------------------
base=$("$repo/scripts/debian-root.sh" git,make,curl,ca-certificates)
rm -rf "$root"
mkdir -p "$root" "$work/cargo-registry"
tar -C "$root" -xf "$base"
# A Debian 12 installation's own sources (debootstrap writes only the release).
cat >"$root/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# The network's own certificate authorities (a TLS-inspecting proxy, as on the
# machines this runs on) are the site's, not a package: the root trusts what the
# host trusts, as a machine set up on that network would.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
mkdir -p "$root/opt/rust" "$root/mnt/hark-src" "$root/root/.cargo/registry"
say "root ready from $(basename "$base")"

# in_root [--offline] SCRIPT: runs SCRIPT with bash inside the root, in the clone,
# with a clean environment; PID and mount namespaces of its own (every process
# it started dies with it), and with --offline a network namespace with only
# loopback up.
in_root() {
    local net=() offline=
    if [ "$1" = --offline ]; then net=(--net); offline=1; shift; fi
    unshare --mount --pid --fork "${net[@]}" bash -euo pipefail -c '
        root=$1 sysroot=$2 repo=$3 registry=$4 script=$5 offline=$6
        mount --make-rprivate /
        [ -z "$offline" ] || ip link set lo up
        mount --bind "$sysroot" "$root/opt/rust" && mount -o remount,bind,ro "$root/opt/rust"
        mount --bind "$repo" "$root/mnt/hark-src" && mount -o remount,bind,ro "$root/mnt/hark-src"
        mount --bind "$registry" "$root/root/.cargo/registry"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --rbind /sys "$root/sys"
        exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
            PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            /bin/bash -euo pipefail -c "cd /root/hark 2>/dev/null || cd /root; $script"
    ' in_root "$root" "$sysroot" "$repo" "$work/cargo-registry" "$1" "$offline"
}

# --- the clone --------------------------------------------------------------------
commit=$(git -C "$repo" rev-parse --verify "$ref^{commit}")
in_root "update-ca-certificates >/dev/null && git clone -q /mnt/hark-src /root/hark && git -C /root/hark checkout -q $commit"
say "cloned $commit"

# --- 1. without a C toolchain, the build must fail as the issue saw it --------------
in_root "sed -i '/^  gcc libc6-dev\$/d' scripts/install-deps.sh && ! git diff --quiet scripts/install-deps.sh" \
    || fail "could not take the C toolchain line ('  gcc libc6-dev') out of scripts/install-deps.sh"
set +e
in_root "make build" >"$work/negative.log" 2>&1
rc=$?
set -e
in_root "git checkout -q -- scripts/install-deps.sh"
[ "$rc" -ne 0 ] || fail "make build succeeded without a C toolchain: this check cannot see a missing one (log: $work/negative.log)"
grep -q 'linker `cc` not found' "$work/negative.log" \
    || { tail -20 "$work/negative.log" >&2; fail "make build without a C toolchain failed, but not with 'linker \`cc\` not found'"; }
say "1. without the C toolchain line: make build fails with 'linker \`cc\` not found', as it should"

# --- 2. make build --------------------------------------------------------------------
in_root "make build" >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; fail "make build (log: $work/build.log)"; }
say "2. make build"

# --- 3. make test's build (or all of make test) ------------------------------------------
if [ -n "${FRESH_FULL_TEST:-}" ]; then test_cmd="make test"; else test_cmd="make test TEST_ARGS=--no-run"; fi
in_root "$test_cmd" >"$work/test-build.log" 2>&1 \
    || { tail -30 "$work/test-build.log" >&2; fail "$test_cmd (log: $work/test-build.log)"; }
say "3. $test_cmd"

# --- 4. make run serves the tone --------------------------------------------------------
in_root --offline '
    make run >/root/run.log 2>&1 &
    # Ready as an operator would check it: /healthz answers 200 once every
    # configured stream plays (the RTSP port opens earlier, answering 503).
    ok=
    for _ in $(seq 1 150); do
        if curl -fsS -o /dev/null http://127.0.0.1:8780/healthz 2>/dev/null; then ok=1; break; fi
        kill -0 $! 2>/dev/null || break
        sleep 0.2
    done
    [ -n "$ok" ] || { cat /root/run.log >&2; curl -sS http://127.0.0.1:8780/healthz >&2; echo "make run: /healthz not 200 within 30 s" >&2; exit 1; }
    /usr/bin/python3 -c "
import sys
sys.path.insert(0, \"hardware-tests\")
import hil
hil.assert_tone(hil.ffmpeg_pull(\"rtsp://127.0.0.1:8554/test-tone\", 3), 440, \"make run: rtsp://127.0.0.1:8554/test-tone\", hil.TEST_TONE_RMS)
"
    # As systemd stops it: harkd shuts down gracefully and make exits 0.
    pkill -TERM -x harkd
    wait $! || { cat /root/run.log >&2; echo "make run: harkd did not exit cleanly on SIGTERM" >&2; exit 1; }
' >"$work/run.log" 2>&1 || { cat "$work/run.log" >&2; fail "make run and its tone (log: $work/run.log)"; }
grep 'hil:' "$work/run.log" >&2 || true
say "4. make run serves the test tone, decoded by ffmpeg"
say "PASS"

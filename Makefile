# hark: the entry point for humans. `make run` serves a test tone; `make test` runs
# every test. Both install missing Debian packages first (apt-get, needs root/sudo).

CARGO ?= cargo
CONFIG ?= configs/dev.toml
# D-Bus for `make run`: none, session (busctl --user), or system (needs the policy
# in configs/dbus installed).
BUS ?= none

.PHONY: all deps build build-aarch64 check-aarch64 run test lint bench bench-groups bench-recording bench-web churn soak drift fuzz hil hil-aarch64 fresh-check check-image check-layer clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release --locked

# harkd for a Raspberry Pi 3/4/5 on a 64-bit OS (aarch64), cross-built on Debian 12
# against an arm64 Debian tree unpacked under target/debian-roots (no Nix or Yocto
# needed): target/aarch64-unknown-linux-gnu/release/harkd. The emulated USB mic too,
# for the aarch64 hardware tests. See scripts/cross-aarch64.sh.
build-aarch64: deps
	scripts/cross-aarch64.sh $(CARGO) build --release --locked --target aarch64-unknown-linux-gnu -p hark-agent -p hark-usbip-mic

# The aarch64 build checked on this host: harkd under qemu-user serves the test
# tone and the host decodes it (scripts/check-aarch64.sh).
check-aarch64: build build-aarch64
	scripts/check-aarch64.sh

# Serves rtsp://127.0.0.1:8554/test-tone (try: ffplay rtsp://127.0.0.1:8554/test-tone).
run: build
	./target/release/harkd run --config $(CONFIG) --bus $(BUS)

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# TEST_ARGS is passed to cargo test (e.g. TEST_ARGS=--no-run builds the tests only).
TEST_ARGS ?=
test: lint
	scripts/browser-venv.sh >/dev/null
	$(CARGO) test --locked --workspace $(TEST_ARGS)

# The README's commands on a fresh Debian 12 root (debootstrap minbase + git, make,
# curl), with this machine's Rust mounted read-only; see scripts/fresh-check.sh.
# Checks what is committed (HEAD). Needs root.
fresh-check: deps
	scripts/fresh-check.sh

# Hardware-in-the-loop: real kernels in QEMU with real udev and sound drivers;
# see hardware-tests/. HIL=<scenario ...> runs only those.
hil: build
	cd hardware-tests && /usr/bin/python3 -m unittest test_analyse
	hardware-tests/build-guest.sh target/hil target/release/harkd target/release/hark-usbip-mic
	hardware-tests/build-system.sh target/hil-system target/hil target/release/harkd target/release/hark-usbip-mic
	/usr/bin/python3 hardware-tests/hil.py target/hil --system target/hil-system $(HIL)

# The hardware tests on aarch64: qemu-system-aarch64 -M virt (Cortex-A72, TCG)
# booting Debian's arm64 kernel, with the cross-built harkd and guest-side mic
# (the host side of the emulated mic is the host's build): the fast tier's
# scenarios and the systemd tier on an arm64 Debian root (see
# hardware-tests/README.md). The runner's own checks (runner-bounds) run on
# x86_64 only: they test the runner, not the guest.
# HIL_AARCH64=<scenario ...> runs only those.
HIL_AARCH64 ?= aloop-hotplug aloop-rates usb-hotplug playback-only identity hotplug-latency \
	real-trees system-service system-watchdog system-deadman
hil-aarch64: build build-aarch64
	hardware-tests/build-guest.sh target/hil-aarch64 target/aarch64-unknown-linux-gnu/release/harkd \
		target/aarch64-unknown-linux-gnu/release/hark-usbip-mic "$$(scripts/cross-aarch64.sh --sysroot)"
	hardware-tests/build-system.sh target/hil-aarch64-system target/hil-aarch64 \
		target/aarch64-unknown-linux-gnu/release/harkd target/aarch64-unknown-linux-gnu/release/hark-usbip-mic \
		"$$(scripts/cross-aarch64.sh --sysroot)"
	/usr/bin/python3 hardware-tests/hil.py target/hil-aarch64 --system target/hil-aarch64-system $(HIL_AARCH64)

# The images, checked offline (no Nix build, no bitbake build here): the Nix flake,
# module and images (nix/tests/check.sh) and the Yocto layer (yocto-layer/check.sh:
# bitbake parse + graph for qemuarm64 and raspberrypi4-64, read-back, oelint,
# crates.inc, GStreamer elements, kas, offline fetch of the source). Each script
# installs what it needs and runs negative tests that prove its checks can fail.
check-image: build
	nix/tests/check.sh
	yocto-layer/check.sh

# yocto-check-layer on meta-hark (about 20 min on 2 cores): by hand, not in CI.
check-layer: deps
	yocto-layer/check-layer.sh

# CPU, memory and latency against the baselines named in the issue; see scripts/bench.py.
bench: build
	$(CARGO) build --release --locked --examples
	/usr/bin/python3 scripts/bench.py

# What a group costs over its members alone (CPU), and the latency it adds;
# see scripts/group_cost.py.
bench-groups: build
	/usr/bin/python3 scripts/group_cost.py

# What recording costs: 4 streams recorded against the same 4 streaming alone,
# Opus (Ogg) and L16 (FLAC), as ratios per rep (scripts/record_cost.py).
bench-recording: build
	/usr/bin/python3 scripts/record_cost.py

# What listening in a browser costs: one stream alone, with an RTSP client, with
# 1 and 4 browsers listening over WHEP (headless Chromium), Opus and L16, as
# ratios per rep (scripts/web_cost.py).
bench-web: build
	"$$(scripts/browser-venv.sh)" scripts/web_cost.py

# 10,000 mixed RTSP sessions (TCP and UDP, TEARDOWN or vanishing mid-PLAY,
# DESCRIBE probes) on one running stream: none may fail, and RSS, descriptors and
# threads must come back (agent/tests/churn.rs; `make test` runs 1,000).
CHURN_SESSIONS ?= 10000
churn: deps
	CHURN_SESSIONS=$(CHURN_SESSIONS) $(CARGO) test --locked -p hark-agent --test churn -- --nocapture

# The fault soak: 16 streams, reconnecting clients, pollers and injected faults
# for SOAK_SECONDS (agent/tests/soak.rs; CI runs 180).
SOAK_SECONDS ?= 1200
soak: deps
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --locked -p hark-agent --test soak -- --ignored --nocapture

# Two FIFO-backed ALSA mics paced 208 ppm apart in one merge group for
# DRIFT_SECONDS of audio (agent/tests/groups.rs; `make test` runs 90).
DRIFT_SECONDS ?= 600
drift: deps
	HARK_DRIFT_SECONDS=$(DRIFT_SECONDS) $(CARGO) test --locked -p hark-agent --test groups two_mics -- --nocapture

# Every parser of outside input fuzzed with cargo-fuzz (nightly, installed by
# the script), FUZZ_SECONDS each (default 60); see scripts/fuzz.sh. The corpora
# (fuzz/corpus) are replayed on stable by `make test`.
fuzz: deps
	scripts/fuzz.sh

clean:
	$(CARGO) clean

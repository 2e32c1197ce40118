#!/usr/bin/env bash
# yocto-check-layer on meta-hark (oe-core's own layer compatibility test: README,
# SECURITY, parse, world signatures with and without the layer, ...). Takes about
# 20 minutes on 2 shared cores, so it is `make check-layer`, not part of every CI
# run. meta-oe, meta-python and meta-multimedia (the dependencies) are added
# but not tested themselves.
# Offline; the same inputs as check.sh (see lib.sh). Log: target/yocto/check-layer.log
. "$(dirname "$0")/lib.sh"
STEP=check-layer
start=$(date +%s)
host_setup
bb_user_setup
unpack_all
B=$Y/build-check-layer
# The build directory holds only oe-core; yocto-check-layer adds the layer and
# its dependencies (meta-oe, meta-python, meta-multimedia) themselves.
# The default distro (nodistro): the signature test compares the world's task
# signatures with and without meta-hark, which must not change them.
rm -rf "$B"
mkdir -p "$B/conf"
cat > "$B/conf/local.conf" <<EOC
MACHINE = "qemuarm64"
BB_NO_NETWORK = "1"
BB_NUMBER_THREADS = "2"
BB_NUMBER_PARSE_THREADS = "2"
PACKAGE_CLASSES = "package_ipk"
CONF_VERSION = "2"
EOC
echo "BBLAYERS = \"$SRC/openembedded-core/meta\"" > "$B/conf/bblayers.conf"
log "yocto-check-layer $LAYER (dependencies meta-oe, meta-python, meta-multimedia), MACHINE qemuarm64"
set +e
bb_run "$B" "yocto-check-layer '$LAYER' --dependency '$SRC/meta-openembedded/meta-oe' '$SRC/meta-openembedded/meta-python' '$SRC/meta-openembedded/meta-multimedia' --no-auto-dependency --no-auto --machines qemuarm64" 2>&1 | tee "$Y/check-layer.log"
rc=${PIPESTATUS[0]}
set -e
log "yocto-check-layer exit code $rc after $(elapsed "$start") s"
grep -E '^(INFO: )?(test_|Ran |OK|FAILED)|INFO: (test_|Ran )|INFO: .*(ok|FAIL|ERROR|skipped)' "$Y/check-layer.log" | tail -30 >&2 || true
exit "$rc"

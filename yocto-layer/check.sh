#!/usr/bin/env bash
# The offline checks of meta-hark, with the real bitbake 2.18 and oe-core,
# meta-oe and meta-raspberrypi of wrynose (unpacked from the vendored tarballs,
# see lib.sh), and their negative tests. Self-contained: installs what it needs
# (apt-get, only when missing; a venv under target/yocto/ for oelint-adv and kas),
# runs bitbake as an unprivileged user when started as root. No network.
#
#   1. harkd-crates.inc is what oe-core's cargo-update-recipe-crates writes for
#      Cargo.lock (the working tree's, and the one at the recipe's SRCREV), and
#      gen-crates-inc.py writes exactly what the class's own code does;
#   2. oelint-adv (wrynose) on the layer: no error, no warning (.oelint.cfg);
#   3. the kas files: kas's schema, pins = the vendored commits, `kas dump`;
#   4. per MACHINE (qemuarm64; raspberrypi4-64 with meta-raspberrypi): bitbake
#      parses every recipe of oe-core, meta-oe (+ meta-raspberrypi) and
#      meta-hark and resolves `bitbake -g hark-image`; then the variables of
#      harkd, the image, the packagegroup, the system settings and the
#      GStreamer recipes are read back and asserted (assert-readback.py);
#   5. the GStreamer elements harkd creates against RDEPENDS (check-gst-elements.py);
#   6. negative tests, on broken copies under target/yocto/neg/: each check
#      above must fail, with its message.
# Parse caches stay in target/yocto/build-*/ so a second run is quick.
. "$(dirname "$0")/lib.sh"
T0=$(date +%s)
SCRIPTS=$REPO/yocto-layer/scripts
RECIPE=$LAYER/recipes-multimedia/harkd/harkd_0.1.0.bb
CRATES=$LAYER/recipes-multimedia/harkd/harkd-crates.inc
NEG=$Y/neg
TIMES=()
timed() { TIMES+=("$(printf '%-44s %4ss' "$1" "$2")"); }

STEP=setup; t=$(date +%s)
host_setup
bb_user_setup
unpack_all
venv_setup
command -v gst-inspect-1.0 >/dev/null || die "gst-inspect-1.0 missing (scripts/install-deps.sh installs GStreamer)"
timed "setup (packages, trees, venv)" "$(elapsed "$t")"

# The commits of the vendored trees, from the git-archive tarballs themselves.
# (git get-tar-commit-id reads the first header only: zstd's SIGPIPE is expected.)
tree_commit() {
    local c
    c=$(set +o pipefail; zstd -dc "$1" 2>/dev/null | git get-tar-commit-id)
    [[ $c =~ ^[0-9a-f]{40}$ ]] || die "$1 is not a git archive tarball (no commit id in it)"
    echo "$c"
}
TREE_ARGS=(
    --tree "bitbake=$SRC/bitbake:$(tree_commit "$HARK_BITBAKE_TARBALL")"
    --tree "openembedded-core=$SRC/openembedded-core:$(tree_commit "$HARK_OE_CORE_TARBALL")"
    --tree "meta-openembedded=$SRC/meta-openembedded:$(tree_commit "$HARK_META_OE_TARBALL")"
    --tree "meta-raspberrypi=$SRC/meta-raspberrypi:$(tree_commit "$HARK_META_RPI_TARBALL")"
)

# ---- 1. crates.inc -------------------------------------------------------------
STEP=crates; t=$(date +%s)
SRCREV=$(sed -n 's/^SRCREV = "\([0-9a-f]*\)"$/\1/p' "$RECIPE")
[ -n "$SRCREV" ] || die "no SRCREV in $RECIPE"
"$SCRIPTS/gen-crates-inc.py" --check "$CRATES" || die "harkd-crates.inc does not match Cargo.lock"
"$SCRIPTS/gen-crates-inc.py" --rev "$SRCREV" --check "$CRATES" ||
    die "harkd-crates.inc does not match Cargo.lock at SRCREV $SRCREV: move SRCREV to a commit with this Cargo.lock"
# The class's own code (the python heredoc of do_update_crates in the vendored
# cargo-update-recipe-crates.bbclass), run on a clean export of the tree
# (what ${S} is), must write the same file as gen-crates-inc.py.
rm -rf "$Y/crates-class" && mkdir -p "$Y/crates-class/S"
git -C "$REPO" archive HEAD | tar -x -C "$Y/crates-class/S"
cp "$REPO/Cargo.lock" "$Y/crates-class/S/Cargo.lock"   # the working tree's lock, as --check used
sed -n '/nativepython3 - <<EOF/,/^EOF$/p' "$SRC/openembedded-core/meta/classes-recipe/cargo-update-recipe-crates.bbclass" |
    sed '1d;$d' |
    sed -e "s|\${CARGO_LOCK_SRC_DIR}|$Y/crates-class/S|g" -e "s|\${TARGET_FILE}|$Y/crates-class/harkd-crates.inc|g" \
        -e 's|\${PN}|harkd|g' > "$Y/crates-class/heredoc.txt"
# The class feeds it to python through an unquoted shell here-document: let the
# shell process it the same way (backslashes).
{ echo 'cat <<EOF'; cat "$Y/crates-class/heredoc.txt"; echo 'EOF'; } | bash > "$Y/crates-class/update_crates.py"
grep -q 'tomllib' "$Y/crates-class/update_crates.py" || die "could not extract do_update_crates from the bbclass"
python3 "$Y/crates-class/update_crates.py"
cmp "$Y/crates-class/harkd-crates.inc" <("$SCRIPTS/gen-crates-inc.py") ||
    die "gen-crates-inc.py and oe-core's cargo-update-recipe-crates class disagree"
log "harkd-crates.inc: $(grep -c 'crate://' "$CRATES") crates, current (working tree and SRCREV ${SRCREV:0:12}), same as the class writes"
timed "crates.inc (3 ways)" "$(elapsed "$t")"

# ---- 2. oelint-adv ---------------------------------------------------------------
STEP=oelint; t=$(date +%s)
# Run oelint-adv on a layer ($1); prints findings; fails on any error or warning.
# The generated crates.inc keeps the format oe-core writes (.oelint.cfg says why).
oelint() {
    local layer=$1 out
    out=$(cd "$(dirname "$layer")" && OELINT_CONFIG=$REPO/yocto-layer/.oelint.cfg \
          "$VENV/bin/oelint-adv" --quiet $(cd "$(dirname "$layer")" && find "$(basename "$layer")" \( -name '*.bb' -o -name '*.bbappend' \) | sort) 2>&1 |
          grep -v -E '/harkd-crates\.inc:[0-9]+:error:oelint\.vars\.inconspaces:' || true)
    printf '%s\n' "$out" | sed '/^$/d'
    ! printf '%s\n' "$out" | grep -q -E ':(error|warning):'
}
oelint "$LAYER" || die "oelint-adv found errors or warnings in meta-hark"
log "oelint-adv $OELINT_ADV_VERSION (release wrynose): no errors, no warnings"
timed "oelint-adv" "$(elapsed "$t")"

# ---- 3. kas ----------------------------------------------------------------------
STEP=kas; t=$(date +%s)
rm -rf "$Y/kaswork" && mkdir -p "$Y/kaswork"
"$VENV/bin/python" "$SCRIPTS/check-kas.py" --kas-dir "$REPO/kas" --work "$Y/kaswork" "${TREE_ARGS[@]}" ||
    die "kas files"
timed "kas (schema, pins, kas dump x2)" "$(elapsed "$t")"

# ---- 4. bitbake ------------------------------------------------------------------
READ=(
    "harkd=SYSTEMD_SERVICE:harkd,SYSTEMD_AUTO_ENABLE:harkd,FILES:harkd,CONFFILES:harkd,RDEPENDS:harkd,USERADD_PARAM:harkd,GROUPADD_PARAM:harkd,do_install,D,S,SRCREV,LIC_FILES_CHKSUM,CARGO_MANIFEST_PATH,CARGO_LOCK_PATH,VIRTUAL-RUNTIME_base-utils"
    "hark-image=IMAGE_INSTALL,IMAGE_FEATURES,EXTRA_USERS_PARAMS,DISTRO,DISTRO_FEATURES,VIRTUAL-RUNTIME_init_manager"
    "packagegroup-hark=RDEPENDS:packagegroup-hark"
    "hark-system-conf=do_install,D,S,FILES:hark-system-conf"
    "gstreamer1.0-plugins-base=PACKAGECONFIG"
    "gstreamer1.0-plugins-good=PACKAGECONFIG"
    "gstreamer1.0-plugins-bad=PACKAGECONFIG"
    "libnice=PACKAGECONFIG"
)
WRITTEN_RDEPENDS=$("$SCRIPTS/check-gst-elements.py" --recipe "$RECIPE" --print-recipe-rdepends)
# meta-openembedded's layers meta-hark needs: meta-oe (libopus, libnice) and
# meta-multimedia (libsrtp, for webrtcbin), which needs meta-python.
OE_LAYERS="$SRC/meta-openembedded/meta-oe $SRC/meta-openembedded/meta-python $SRC/meta-openembedded/meta-multimedia"

bitbake_machine() {
    local machine=$1 layers=$2 extra=${3:-} B=$Y/build-$1 t
    STEP=$machine
    t=$(date +%s)
    make_builddir "$B" "$machine" "$layers $LAYER" "$extra"
    timed "$machine: warm-up (code parser cache)" "$(elapsed "$t")"
    t=$(date +%s)
    log "bitbake -g hark-image (a full parse in a fresh build directory)"
    rm -f "$B/pn-buildlist"
    bb_run "$B" "bitbake -g hark-image" > "$B/graph.log" 2>&1 || { cat "$B/graph.log" >&2; die "bitbake -g hark-image failed"; }
    grep -E '^Parsing of|^NOTE: (PN build list|Task dependencies)' "$B/graph.log" >&2 || true
    timed "$machine: bitbake -g hark-image" "$(elapsed "$t")"
    t=$(date +%s)
    bb_run "$B" "python3 '$SCRIPTS/bb-readback.py' '$B/readback.json' ${READ[*]}" > "$B/readback.log" 2>&1 ||
        { cat "$B/readback.log" >&2; die "reading variables back failed"; }
    grep -E '^Parsing of' "$B/readback.log" >&2 || true
    timed "$machine: read back (tinfoil)" "$(elapsed "$t")"
    python3 "$SCRIPTS/assert-readback.py" "$B/readback.json" --buildlist "$B/pn-buildlist" --machine "$machine" \
        --recipe-rdepends "$WRITTEN_RDEPENDS" || die "readback of $machine"
}
# qemuarm64 also fetches and unpacks harkd's default source offline: the git
# SRC_URI at SRCREV from a mirror of this repository (PREMIRRORS), the crates of
# harkd-crates.inc from cargo's download cache, each checked by bitbake against
# its sha256sum; the host's git instead of building git-native.
bitbake_machine qemuarm64 "$OE_LAYERS" \
    "PREMIRRORS:prepend = \"git://github.com/hark-audio/.* git://$Y/git-mirror/BASENAME;protocol=file \\n\"
ASSUME_PROVIDED += \"git-native\""

STEP=source; t=$(date +%s)
B=$Y/build-qemuarm64
(cd "$REPO" && cargo fetch --locked -q) || die "cargo fetch --locked (the crates of Cargo.lock, from crates.io)"
CACHES=("${CARGO_HOME:-$HOME/.cargo}"/registry/cache/index.crates.io-*/)
CRATE_CACHE=${CACHES[0]}
mkdir -p "$B/downloads"
sed -n 's|^ *crate://crates.io/\([^/]*\)/\([^ ]*\) \\$|\1-\2.crate|p' "$CRATES" | while read -r f; do
    [ -e "$B/downloads/$f" ] || cp "$CRATE_CACHE/$f" "$B/downloads/$f" || die "$f is not in cargo's cache"
done
rm -rf "$Y/git-mirror" && mkdir -p "$Y/git-mirror"
git clone -q --mirror "$REPO" "$Y/git-mirror/hark.git"
[ "$(id -u)" -ne 0 ] || chown -R "$HARK_YOCTO_USER": "$Y/git-mirror"
# Every run fetches again: no work directory, no stamps, no git clone, no .done
# marks (bitbake then checks each file against its sha256sum).
rm -rf "$B"/tmp/work/*/harkd "$B"/tmp/stamps/*/harkd "$B"/downloads/git2 "$B"/downloads/*.done
bb_run "$B" "bitbake harkd -c unpack" > "$B/unpack.log" 2>&1 ||
    { tail -40 "$B/unpack.log" >&2; die "bitbake harkd -c unpack (the default source, offline) failed"; }
WORKS=("$B"/tmp/work/*/harkd/0.1.0*/)
WORK=${WORKS[0]}
S_DIR=$WORK/sources/harkd-0.1.0
[ -f "$S_DIR/agent/Cargo.toml" ] && [ -f "$S_DIR/Cargo.lock" ] || die "no harkd tree at $S_DIR after do_unpack"
got=$(git -c safe.directory='*' -C "$S_DIR" rev-parse HEAD)   # the tree belongs to the build user
[ "$got" = "$SRCREV" ] || die "do_unpack checked out '$got', not SRCREV $SRCREV"
for f in $(git -C "$REPO" ls-files configs); do [ -f "$S_DIR/$f" ] || die "$f missing from the source at SRCREV"; done
n=$(ls -d "$WORK"/sources/cargo_home/bitbake/*/ 2>/dev/null | wc -l)
[ "$n" -eq "$(grep -c 'crate://' "$CRATES")" ] || die "$n crates vendored, harkd-crates.inc has $(grep -c 'crate://' "$CRATES")"
log "bitbake harkd -c unpack: SRCREV ${SRCREV:0:12} checked out from the git SRC_URI (mirror), $n crates fetched with their checksums and vendored"
timed "harkd: fetch + unpack (offline)" "$(elapsed "$t")"
# ...and bitbake does check them: a crate file that is not what crates.inc
# says must stop do_fetch (negative test; same configuration, cached parse).
t=$(date +%s)
first=$(grep -m1 -o 'crate://crates.io/[^ ]*' "$CRATES" | sed 's|crate://crates.io/\([^/]*\)/\(.*\)|\1-\2.crate|')
cp "$B/downloads/$first" "$NEG/$first.good" 2>/dev/null || { mkdir -p "$NEG"; cp "$B/downloads/$first" "$NEG/$first.good"; }
head -c 4096 /dev/urandom > "$B/downloads/$first"
rm -rf "$B"/tmp/work/*/harkd "$B"/tmp/stamps/*/harkd "$B/downloads/$first.done"
STEP=negative
set +e; out=$(bb_run "$B" "bitbake harkd -c fetch" 2>&1); rc=$?; set -e
cp "$NEG/$first.good" "$B/downloads/$first"; rm -f "$B/downloads/$first.done" "$B/downloads/$first"_bad-checksum_*
[ "$rc" -ne 0 ] || die "negative test 'crate checksum': do_fetch accepted a corrupt $first"
printf '%s\n' "$out" | grep -q -E "Checksum mismatch|checksum.*mismatch" ||
    { printf '%s\n' "$out" | tail -20 >&2; die "negative test 'crate checksum': failed without a checksum message"; }
log "negative test 'crate checksum' fails as it must: $(printf '%s\n' "$out" | grep -m1 -i -E 'checksum mismatch' | cut -c1-200)"
timed "negative: corrupt crate stops do_fetch" "$(elapsed "$t")"
bitbake_machine raspberrypi4-64 "$OE_LAYERS $SRC/meta-raspberrypi" \
    'LICENSE_FLAGS_ACCEPTED = "synaptics-killswitch"'

# ---- 5. GStreamer elements ---------------------------------------------------------
STEP=elements; t=$(date +%s)
READBACK=$Y/build-qemuarm64/readback.json
"$SCRIPTS/check-gst-elements.py" --oe-core "$SRC/openembedded-core" --readback "$READBACK" -v ||
    die "GStreamer elements against RDEPENDS (qemuarm64)"
# meta-raspberrypi appends to GStreamer recipes: its PACKAGECONFIG must build them too.
"$SCRIPTS/check-gst-elements.py" --oe-core "$SRC/openembedded-core" --readback "$Y/build-raspberrypi4-64/readback.json" ||
    die "GStreamer elements against RDEPENDS (raspberrypi4-64)"
timed "element check" "$(elapsed "$t")"

# ---- 6. negative tests ---------------------------------------------------------------
STEP=negative; t=$(date +%s)
# expect_fail NAME PATTERN COMMAND...: COMMAND must fail and print PATTERN.
expect_fail() {
    local name=$1 pattern=$2 out rc; shift 2
    set +e; out=$("$@" 2>&1); rc=$?; set -e
    if [ "$rc" -eq 0 ]; then printf '%s\n' "$out" >&2; die "negative test '$name': the check passed"; fi
    if ! printf '%s\n' "$out" | grep -q -E -- "$pattern"; then
        printf '%s\n' "$out" >&2; die "negative test '$name': failed (rc $rc) without /$pattern/"
    fi
    log "negative test '$name' fails as it must: $(printf '%s\n' "$out" | grep -m1 -E -- "$pattern" | cut -c1-230)"
}
fresh_copy() {  # a copy of the layer to break
    rm -rf "$NEG/$1" && mkdir -p "$NEG/$1" && cp -a "$LAYER" "$NEG/$1/meta-hark"
    echo "$NEG/$1/meta-hark"
}

# a misspelt plugin package (bitbake -g accepts it: PACKAGES_DYNAMIC)
L=$(fresh_copy rdepends)
sed -i 's/gstreamer1.0-plugins-good-rtp \\/gstreamer1.0-plugins-good-rtpp \\/' "$L/recipes-multimedia/harkd/harkd_0.1.0.bb"
grep -q 'good-rtpp' "$L/recipes-multimedia/harkd/harkd_0.1.0.bb" || die "could not break the copy (rdepends)"
expect_fail "misspelt RDEPENDS plugin package" "names gstreamer1.0-plugins-good-rtpp, a plugin package GStreamer does not build" \
    "$SCRIPTS/check-gst-elements.py" --oe-core "$SRC/openembedded-core" --readback "$READBACK" --recipe "$L/recipes-multimedia/harkd/harkd_0.1.0.bb"
# a plugin package only built with a PACKAGECONFIG the distro lacks
jq_like() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["gstreamer1.0-plugins-base"]["PACKAGECONFIG"]=d["gstreamer1.0-plugins-base"]["PACKAGECONFIG"].replace("opus",""); json.dump(d,open(sys.argv[2],"w"))' "$@"; }
jq_like "$READBACK" "$NEG/no-opus.json"
expect_fail "opus plugin not built by the distro" "gstreamer1.0-plugins-base-opus, which is not built: gstreamer1.0-plugins-base is built without PACKAGECONFIG 'opus'" \
    "$SCRIPTS/check-gst-elements.py" --oe-core "$SRC/openembedded-core" --readback "$NEG/no-opus.json"
# WHEP's plugins without the distro's PACKAGECONFIG lines
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["gstreamer1.0-plugins-bad"]["PACKAGECONFIG"]=d["gstreamer1.0-plugins-bad"]["PACKAGECONFIG"].replace("webrtc",""); d["libnice"]["PACKAGECONFIG"]=d["libnice"]["PACKAGECONFIG"].replace("gstreamer",""); json.dump(d,open(sys.argv[2],"w"))' \
    "$READBACK" "$NEG/no-webrtc.json"
expect_fail "webrtc plugin not built" "gstreamer1.0-plugins-bad-webrtc, which is not built: gstreamer1.0-plugins-bad is built without PACKAGECONFIG 'webrtc'" \
    "$SCRIPTS/check-gst-elements.py" --oe-core "$SRC/openembedded-core" --readback "$NEG/no-webrtc.json"
expect_fail "libnice without its GStreamer plugin" "libnice is built without PACKAGECONFIG 'gstreamer'" \
    "$SCRIPTS/check-gst-elements.py" --oe-core "$SRC/openembedded-core" --readback "$NEG/no-webrtc.json"
# an element in the source whose plugin is not in RDEPENDS
rm -rf "$NEG/agent-src" && cp -a "$REPO/agent/src" "$NEG/agent-src"
printf '\npub fn wav() { let _ = gstreamer::ElementFactory::make("wavenc").build(); }\n' >> "$NEG/agent-src/media/pipeline.rs"
expect_fail "element without a package" "element\(s\) wavenc need package gstreamer1.0-plugins-good-wavenc, which is not in RDEPENDS" \
    "$SCRIPTS/check-gst-elements.py" --oe-core "$SRC/openembedded-core" --readback "$READBACK" --agent-src "$NEG/agent-src"

# a wrong LAYERSERIES_COMPAT: bitbake stops at the configuration (no recipe parse)
L=$(fresh_copy compat)
sed -i 's/^LAYERSERIES_COMPAT_hark = .*/LAYERSERIES_COMPAT_hark = "scarthgap"/' "$L/conf/layer.conf"
B=$NEG/build-compat; rm -rf "$B"; mkdir -p "$B/conf"
cp "$Y/build-qemuarm64/conf/local.conf" "$B/conf/local.conf"
echo "BBLAYERS = \"$SRC/openembedded-core/meta $OE_LAYERS $L\"" > "$B/conf/bblayers.conf"
expect_fail "wrong LAYERSERIES_COMPAT" "Layer hark is not compatible with the core layer which only supports these series: wrynose \(layer is compatible with scarthgap\)" \
    bb_run "$B" "bitbake -e"

# a stale crates.inc (one crate dropped, as after a dependency change)
L=$(fresh_copy crates)
sed -i '0,/crate:\/\/crates.io\/alsa\/.*/{/crate:\/\/crates.io\/alsa\//d}' "$L/recipes-multimedia/harkd/harkd-crates.inc"
expect_fail "stale crates.inc" "harkd-crates.inc is stale: it does not match Cargo.lock" \
    "$SCRIPTS/gen-crates-inc.py" --check "$L/recipes-multimedia/harkd/harkd-crates.inc"
expect_fail "crates.inc against an old SRCREV" "is stale: it does not match Cargo.lock at" \
    "$SCRIPTS/gen-crates-inc.py" --rev "$(git -C "$REPO" rev-list --max-parents=0 HEAD | tail -1)" --check "$CRATES"

# a recipe with a lint error (DEPENDS overwritten after the inherits)
L=$(fresh_copy lint)
echo 'DEPENDS = "zlib"' >> "$L/recipes-multimedia/harkd/harkd_0.1.0.bb"
expect_fail "lint error" "harkd_0.1.0.bb:[0-9]+:error:oelint.vars.dependsappend" oelint "$L"

# readback assertions: a deadman unit that would be enabled, a missing conffile
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); h=d["harkd"]; h["SYSTEMD_SERVICE:harkd"]="harkd.service harkd-deadman.service"; h["CONFFILES:harkd"]=""; h["FILES:harkd"]=h["FILES:harkd"].replace("/usr/lib/sysusers.d/hark.conf",""); json.dump(d,open(sys.argv[2],"w"))' \
    "$READBACK" "$NEG/bad-readback.json"
expect_fail "readback assertions" "SYSTEMD_SERVICE:harkd is 'harkd.service harkd-deadman.service'" \
    python3 "$SCRIPTS/assert-readback.py" "$NEG/bad-readback.json" --recipe-rdepends "$WRITTEN_RDEPENDS"
expect_fail "readback assertions (FILES)" "/usr/lib/sysusers.d/hark.conf is installed but in no package" \
    python3 "$SCRIPTS/assert-readback.py" "$NEG/bad-readback.json" --recipe-rdepends "$WRITTEN_RDEPENDS"

# kas: a misspelt key, a pin that is not the vendored commit
rm -rf "$NEG/kas-key" "$NEG/kas-pin" && cp -a "$REPO/kas" "$NEG/kas-key" && cp -a "$REPO/kas" "$NEG/kas-pin"
sed -i 's/^machine:/machnie:/' "$NEG/kas-key/hark-qemuarm64.yml"
sed -i 's/commit: ef022bf82d79[0-9a-f]*/commit: deadbeefdeadbeefdeadbeefdeadbeefdeadbeef/' "$NEG/kas-pin/hark-common.yml"
rm -rf "$NEG/kaswork" && mkdir -p "$NEG/kaswork"
expect_fail "kas misspelt key" "hark-qemuarm64.yml: not a valid kas file: Additional properties are not allowed \('machnie' was unexpected\)" \
    "$VENV/bin/python" "$SCRIPTS/check-kas.py" --kas-dir "$NEG/kas-key" --repo-root "$REPO" --work "$NEG/kaswork" "${TREE_ARGS[@]}"
expect_fail "kas pin" "repo openembedded-core is pinned to deadbeefdeadbeefdeadbeefdeadbeefdeadbeef, the vendored tree is ef022bf82d79" \
    "$VENV/bin/python" "$SCRIPTS/check-kas.py" --kas-dir "$NEG/kas-pin" --repo-root "$REPO" --work "$NEG/kaswork" "${TREE_ARGS[@]}"
timed "negative tests" "$(elapsed "$t")"

STEP=done
log "all Yocto checks passed in $(elapsed "$T0") s"
printf '  %s\n' "${TIMES[@]}" >&2

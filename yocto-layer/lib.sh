# Shared set-up of yocto-layer/check.sh and yocto-layer/check-layer.sh; sourced.
# Everything it makes lives under target/yocto/ of the repository.
#
# Inputs (environment, all optional): the upstream trees as tarballs,
#   HARK_VENDOR_DIR          default ../shared/vendor (relative to the repository)
#   HARK_OE_CORE_TARBALL     default $HARK_VENDOR_DIR/oe-core-wrynose.tar.zst
#   HARK_BITBAKE_TARBALL     default $HARK_VENDOR_DIR/bitbake-2.18.tar.zst
#   HARK_META_OE_TARBALL     default $HARK_VENDOR_DIR/meta-openembedded-wrynose.tar.zst
#   HARK_META_RPI_TARBALL    default $HARK_VENDOR_DIR/meta-raspberrypi-wrynose.tar.zst
# (git archive tarballs of the commits pinned in kas/), and
#   HARK_YOCTO_USER          the unprivileged user bitbake runs as when we are
#                            root (bitbake refuses root); default hark-yocto.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAYER=$REPO/yocto-layer/meta-hark
Y=$REPO/target/yocto
SRC=$Y/src
VENV=$Y/venv
HARK_VENDOR_DIR=${HARK_VENDOR_DIR:-$REPO/../shared/vendor}
HARK_OE_CORE_TARBALL=${HARK_OE_CORE_TARBALL:-$HARK_VENDOR_DIR/oe-core-wrynose.tar.zst}
HARK_BITBAKE_TARBALL=${HARK_BITBAKE_TARBALL:-$HARK_VENDOR_DIR/bitbake-2.18.tar.zst}
HARK_META_OE_TARBALL=${HARK_META_OE_TARBALL:-$HARK_VENDOR_DIR/meta-openembedded-wrynose.tar.zst}
HARK_META_RPI_TARBALL=${HARK_META_RPI_TARBALL:-$HARK_VENDOR_DIR/meta-raspberrypi-wrynose.tar.zst}
HARK_YOCTO_USER=${HARK_YOCTO_USER:-hark-yocto}

# Versions of the PyPI tools, pinned so that a new release cannot change the verdict.
OELINT_ADV_VERSION=9.11.2
KAS_VERSION=5.5

log() { printf '[%s %s] %s\n' "$(date +%T)" "${STEP:-yocto}" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
elapsed() { echo $(( $(date +%s) - $1 )); }

# Host packages bitbake's sanity checks need and a Debian image may lack, and the
# en_US.UTF-8 locale (without it bitbake stops with "Please make sure locale
# 'en_US.UTF-8' is available on your system").
host_setup() {
    local missing=() p
    for p in chrpath diffstat gawk locales python3-venv zstd git file cpio wget lz4 gstreamer1.0-tools; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || die "missing Debian packages ${missing[*]}: install them or run as root"
        log "apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ! locale -a 2>/dev/null | grep -qix 'en_US.utf-\?8'; then
        [ "$(id -u)" -eq 0 ] || die "the en_US.UTF-8 locale is missing: generate it (locale-gen) or run as root"
        log "generating the en_US.UTF-8 locale"
        sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
        grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
        locale-gen >/dev/null
    fi
}

# The unprivileged user bitbake runs as (only when we are root).
bb_user_setup() {
    mkdir -p "$Y"
    if [ "$(id -u)" -eq 0 ]; then
        id "$HARK_YOCTO_USER" >/dev/null 2>&1 ||
            useradd --system --home-dir "$Y/home" --create-home --shell /bin/sh "$HARK_YOCTO_USER"
        mkdir -p "$Y/home"
        chown "$HARK_YOCTO_USER": "$Y" "$Y/home"
        # The layer is in a repository root owns; let the user's git read it
        # (bitbake and yocto-check-layer ask git about the layer).
        su "$HARK_YOCTO_USER" -s /bin/sh -c "HOME='$Y/home' git config --global --get-all safe.directory 2>/dev/null | grep -qx '$REPO' || HOME='$Y/home' git config --global --add safe.directory '$REPO'"
    fi
}

# Run a command line in an initialised build environment (oe-init-build-env) of
# build directory $1, as the unprivileged user when we are root.
bb_run() {
    local builddir=$1; shift
    # The unpacked trees sit inside the project's git work tree: without a
    # ceiling, git (and so oe-core's METADATA_REVISION, which is part of the
    # configuration bitbake hashes) would take the project's HEAD for
    # oe-core's, and every commit would throw the parse cache away.
    local cmd="cd '$Y' && export GIT_CEILING_DIRECTORIES='$SRC' &&
        . '$SRC/openembedded-core/oe-init-build-env' '$builddir' >/dev/null &&
        export BB_ENV_PASSTHROUGH_ADDITIONS=\"\${BB_ENV_PASSTHROUGH_ADDITIONS:-} GIT_CEILING_DIRECTORIES\" && $*"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R "$HARK_YOCTO_USER": "$builddir"
        su "$HARK_YOCTO_USER" -s /bin/bash -c "export LANG=C.UTF-8; $cmd"
    else
        bash -c "$cmd"
    fi
}

# Unpack a tarball into $SRC, again only when the tarball changed.
unpack() {
    local tarball=$1 dir=$2 stamp
    [ -r "$tarball" ] || die "no $tarball (set HARK_VENDOR_DIR or the HARK_*_TARBALL variables)"
    stamp="$(stat -c '%s %Y' "$tarball") $(readlink -f "$tarball")"
    if [ ! -d "$SRC/$dir" ] || [ "$(cat "$SRC/.$dir.stamp" 2>/dev/null)" != "$stamp" ]; then
        log "unpacking $(basename "$tarball")"
        rm -rf "${SRC:?}/$dir"
        mkdir -p "$SRC"
        tar --zstd -xf "$tarball" -C "$SRC"
        [ -d "$SRC/$dir" ] || die "$tarball did not unpack to $dir/"
        echo "$stamp" > "$SRC/.$dir.stamp"
    fi
}

unpack_all() {
    unpack "$HARK_OE_CORE_TARBALL" openembedded-core
    unpack "$HARK_BITBAKE_TARBALL" bitbake
    unpack "$HARK_META_OE_TARBALL" meta-openembedded
    unpack "$HARK_META_RPI_TARBALL" meta-raspberrypi
    [ "$(id -u)" -ne 0 ] || chown -R "$HARK_YOCTO_USER": "$SRC"
}

venv_setup() {
    if ! "$VENV/bin/oelint-adv" --version 2>/dev/null | grep -q "$OELINT_ADV_VERSION" ||
       ! "$VENV/bin/kas" --version 2>&1 | grep -q "$KAS_VERSION"; then
        log "pip install oelint-adv==$OELINT_ADV_VERSION kas==$KAS_VERSION into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "oelint-adv==$OELINT_ADV_VERSION" "kas==$KAS_VERSION"
    fi
}

# A build directory: $1 dir, $2 MACHINE, $3 extra layers (paths), $4 extra local.conf lines.
make_builddir() {
    local dir=$1 machine=$2 layers=$3 extra=${4:-}
    mkdir -p "$dir/conf"
    cat > "$dir/conf/local.conf.new" <<EOC
# Written by yocto-layer/lib.sh; parse, dependency graph and variables only.
MACHINE = "$machine"
DISTRO = "hark"
INIT_MANAGER = "systemd"
BB_NO_NETWORK = "1"
BB_NUMBER_THREADS = "2"
BB_NUMBER_PARSE_THREADS = "2"
DL_DIR = "\${TOPDIR}/downloads"
SSTATE_DIR = "\${TOPDIR}/sstate-cache"
PACKAGE_CLASSES = "package_ipk"
CONF_VERSION = "2"
$extra
EOC
    echo "BBLAYERS = \"$SRC/openembedded-core/meta $layers\"" > "$dir/conf/bblayers.conf.new"
    # Rewrite the files only when they change: their time stamps are part of
    # what bitbake checks before it trusts its parse cache.
    local f
    for f in local.conf bblayers.conf; do
        cmp -s "$dir/conf/$f.new" "$dir/conf/$f" 2>/dev/null && rm "$dir/conf/$f.new" || mv "$dir/conf/$f.new" "$dir/conf/$f"
    done
    # Work-around for a bitbake 2.18 behaviour that makes the first two parses
    # in a fresh build directory both full parses: the configuration hash that
    # names the parse cache includes the module-function dependencies
    # (bb.codeparser.modulecode_deps), and their var_execs are only filled when
    # a module function is parsed from source, not when it comes from the code
    # parser cache (cache/bb_codeparser.dat); so the hash of the first run,
    # without that cache, differs from every later one. Parsing one recipe
    # first (3 s) writes the code parser cache, and the first full parse then
    # stores its cache under the hash later runs compute.
    if [ ! -e "$dir/cache/bb_codeparser.dat" ]; then
        printf 'BBFILES = "${COREBASE}/meta/recipes-core/base-files/base-files_*.bb"\nBBMASK = "/dynamic-layers/"\n' > "$dir/conf/warmup.conf"
        bb_run "$dir" "bitbake -R conf/warmup.conf -p" >"$dir/warmup.log" 2>&1 || { cat "$dir/warmup.log" >&2; die "bitbake warm-up failed in $dir"; }
    fi
}

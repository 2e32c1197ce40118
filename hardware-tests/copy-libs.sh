# Sourced by build-guest.sh and build-system.sh (which set $root): copy files,
# and the shared libraries a program needs, to the same paths in a guest root.
# Paths are taken with their directories resolved
# (/lib/x86_64-linux-gnu/x -> /usr/lib/x86_64-linux-gnu/x): guests have the same
# merged-/usr links as the host.
#
# With $libroot set (an unpacked Debian tree of another architecture, for the
# aarch64 guest), files come from that tree and libraries are found by reading
# each ELF file's DT_NEEDED entries (readelf) in the tree's multiarch
# directories, since the host's ldd cannot run a foreign program. Without it,
# files come from the host and ldd finds the libraries.
libroot=${libroot:-}
put() {
    local dest
    dest="$(realpath -m "$libroot$(dirname "$1")")"
    dest="${dest#"$libroot"}/$(basename "$1")"
    [ -e "$root$dest" ] && return 0
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$libroot$1" "$root$dest"
}
# The libraries (guest paths) an ELF file (a real path) needs, directly or not,
# found in $libroot.
needed_in_root() {
    local todo=("$1") seen=" " f lib dir interp
    while [ ${#todo[@]} -gt 0 ]; do
        f=${todo[0]}
        todo=("${todo[@]:1}")
        interp=$(readelf -lW "$f" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
        if [ -n "$interp" ] && [[ $seen != *" $interp "* ]]; then
            seen="$seen$interp "
            echo "$interp"
        fi
        for lib in $(readelf -dW "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            for dir in /usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu /usr/lib /lib; do
                [ -e "$libroot$dir/$lib" ] || continue
                if [[ $seen != *" $dir/$lib "* ]]; then
                    seen="$seen$dir/$lib "
                    echo "$dir/$lib"
                    todo+=("$libroot$dir/$lib")
                fi
                break
            done
        done
    done
}
libs_of() {
    if [ -n "$libroot" ]; then
        needed_in_root "$1" | while read -r lib; do put "$lib"; done
        return 0
    fi
    ldd "$1" 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
        put "$lib"
    done
}
copy_with_libs() {
    for f in "$@"; do
        put "$f"
        libs_of "$libroot$f"
    done
}

# Sourced by build-guest.sh and build-system.sh (which set $root): copy host
# files, and the shared libraries a host program needs, to the same paths in a
# guest root. Paths are taken with their directories resolved
# (/lib/x86_64-linux-gnu/x -> /usr/lib/x86_64-linux-gnu/x): guests have the same
# merged-/usr links as the host.
put() {
    local dest
    dest="$(realpath -m "$(dirname "$1")")/$(basename "$1")"
    [ -e "$root$dest" ] && return 0
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$1" "$root$dest"
}
libs_of() {
    ldd "$1" 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
        put "$lib"
    done
}
copy_with_libs() {
    for f in "$@"; do
        put "$f"
        libs_of "$f"
    done
}

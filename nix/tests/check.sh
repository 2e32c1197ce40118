#!/usr/bin/env bash
# Offline checks of the Nix half of hark (flake.nix, nix/): what can be checked
# without the network and without full nixpkgs. Self-contained: installs what it
# needs (Debian's nix-bin, nixfmt_rs and deadnix from crates.io, remarshal from
# PyPI) and caches it under target/nix/.
#
#   nix/tests/check.sh            run the checks, then the negative tests
#
# Checks, on a copy of the repository's files (target/nix/work/good):
#   1. every .nix file parses (nix-instantiate --parse)
#   2. nixfmt --check (RFC 166 style), deadnix --fail
#   3. the module, the appliance profile, package.nix and the overlay, evaluated
#      by nix/tests/eval.nix with the real lib.evalModules of the vendored
#      nixpkgs lib and the option stubs in nix/tests/stubs/; check_eval.py
#      compares the result with the shipped unit, sysusers, modules-load.d and
#      configs/hark.toml, and runs the real `harkd check-config` on the
#      rendered settings
#   4. nix flake check --no-build and nix flake show on a shim flake that takes
#      this flake as an input with nixpkgs overridden by the lib tree: it
#      re-exports nixosModules and overlays (checked by flake check), and
#      evaluates eval.nix and the names of every output (packages, checks,
#      devShells, formatter, nixosConfigurations), never their values, which
#      need full nixpkgs
# Then each negative test breaks a copy (target/nix/work/neg-*) and asserts
# that the checks fail with the expected message.
#
# Environment: HARK_NIXPKGS_LIB (default ../shared/vendor/nixpkgs-lib.tar.zst,
# relative to the repository root) may name the tarball or an unpacked lib tree
# (a directory with lib/ and flake.nix); HARKD (default target/release/harkd).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
nixdir=$repo/target/nix
tools=$nixdir/tools
work=$nixdir/work
lib_src=${HARK_NIXPKGS_LIB:-$repo/../shared/vendor/nixpkgs-lib.tar.zst}
harkd=${HARKD:-$repo/target/release/harkd}
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsubstituters =\nbuild-users-group =\nwarn-dirty = false'
export PATH=$tools/bin:$PATH

t0=$(date +%s.%N)
step() { awk -v t0="$t0" -v now="$(date +%s.%N)" -v what="$1" 'BEGIN { printf "== %s (%.1f s)\n", what, now - t0 }'; }

# --- tools --------------------------------------------------------------------------
if ! command -v nix-instantiate >/dev/null; then
  step "installing nix-bin (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends nix-bin >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends nix-bin >/dev/null; }
fi
for crate in nixfmt_rs:0.5.3:nixfmt deadnix:1.3.1:deadnix; do
  IFS=: read -r name version bin <<<"$crate"
  if ! "$tools/bin/$bin" --version 2>/dev/null | grep -q "$version"; then
    step "cargo install $name $version"
    cargo install --quiet --locked --root "$tools" "$name" --version "$version"
  fi
done
if [ ! -x "$nixdir/venv/bin/json2toml" ]; then
  step "pip install remarshal (json2toml, the TOML renderer of nixpkgs' formats.toml)"
  python3 -m venv "$nixdir/venv"
  "$nixdir/venv/bin/pip" install --quiet 'remarshal==1.3.0'
fi
json2toml=$nixdir/venv/bin/json2toml
if [ ! -x "$harkd" ]; then
  step "cargo build --release (harkd, for check-config)"
  cargo build --quiet --release --locked -p hark-agent
fi

# --- the vendored nixpkgs lib ---------------------------------------------------------
if [ -d "$lib_src" ]; then
  libtree=$(cd "$lib_src" && pwd)
else
  libtree=$nixdir/nixpkgs-lib
  stamp=$(stat -c '%s %Y' "$lib_src")
  if [ "$(cat "$libtree.stamp" 2>/dev/null)" != "$stamp" ]; then
    step "unpacking $lib_src"
    rm -rf "$libtree" && tar --zstd -xf "$lib_src" -C "$nixdir"
    echo "$stamp" >"$libtree.stamp"
  fi
fi
[ -f "$libtree/lib/default.nix" ] && [ -f "$libtree/flake.nix" ] \
  || { echo "check.sh: no nixpkgs lib tree at $libtree" >&2; exit 1; }

# --- a copy of the repository's files (tracked and new, not ignored, not target/) -------
copy_repo() {
  rm -rf "$1" && mkdir -p "$1"
  git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | grep -zv '^target/' \
    | (cd "$repo" && xargs -0 cp -a --parents -t "$1" 2>/dev/null || true)
  # Files deleted in the work tree are listed by git but not copied: fine.
}

# --- the checks, on a tree ---------------------------------------------------------------
run_checks() {
  # Every step ends in `|| return 1`: run_checks also runs inside `if`, where
  # bash ignores set -e.
  local tree=$1 out=$2 files f
  mkdir -p "$out"
  mapfile -t files < <(cd "$tree" && find . -name '*.nix' -not -path './target/*' | sort)

  echo "-- parse (${#files[@]} files)"
  for f in "${files[@]}"; do nix-instantiate --parse "$tree/$f" >/dev/null || return 1; done

  echo "-- nixfmt --check"
  (cd "$tree" && nixfmt --check "${files[@]}") || return 1

  echo "-- deadnix --fail"
  (cd "$tree" && deadnix --fail "${files[@]}") || return 1

  echo "-- module, appliance, package: lib.evalModules with stubs"
  nix-instantiate --eval --strict --json --read-write-mode "$tree/nix/tests/eval.nix" \
    --arg libPath "$libtree/lib" >"$out/eval.json" || return 1
  python3 "$tree/nix/tests/check_eval.py" "$out/eval.json" "$tree" "$harkd" "$json2toml" \
    "$out/rendered" || return 1

  echo "-- nix flake check --no-build / nix flake show (shim: this flake, nixpkgs = lib)"
  mkdir -p "$out/shim"
  sed -e "s|@HARK@|path:$tree|" -e "s|@LIB@|path:$libtree|" \
    "$tree/nix/tests/flake-shim.nix" >"$out/shim/flake.nix" || return 1
  nix flake check "path:$out/shim" --no-build --no-write-lock-file || return 1
  nix flake show "path:$out/shim" --no-write-lock-file || return 1
  nix flake metadata "path:$tree" --override-input nixpkgs "path:$libtree" \
    --no-write-lock-file >/dev/null || return 1
}

step "checks"
copy_repo "$work/good"
run_checks "$work/good" "$work/good.out"

# --- negative tests: each broken copy must fail, with the expected message ------------
negatives=0
negative() {
  local name=$1 expect=$2 mutate=$3 tree=$work/neg-$1
  copy_repo "$tree"
  (cd "$tree" && eval "$mutate")
  if run_checks "$tree" "$tree.out" >"$tree.log" 2>&1; then
    echo "NEGATIVE TEST $name: the checks passed on a broken copy" >&2
    exit 1
  fi
  if ! grep -q -- "$expect" "$tree.log"; then
    echo "NEGATIVE TEST $name: failed, but without '$expect':" >&2
    tail -20 "$tree.log" >&2
    exit 1
  fi
  printf 'negative %-20s failed as expected: %s\n' "$name" \
    "$(grep -m1 -- "$expect" "$tree.log" | sed 's/\x1b\[[0-9;]*m//g; s/^[[:space:]│╰─]*//' | cut -c1-150)"
  negatives=$((negatives + 1))
}

step "negative tests"
negative syntax-error "syntax error" \
  "sed -i 's/enable = true;/enable = true/' nix/images/appliance.nix"
negative unformatted "not formatted" \
  "sed -i 's/^    users.groups.hark = { };/    users.groups.hark   =   { };/' nix/module.nix"
negative dead-code "Unused let binding" \
  "sed -i 's/^  cfg = config.services.hark;/  cfg = config.services.hark;\n  unused = 1;/' nix/module.nix"
negative misspelt-option "option .services.udev.packges' does not exist" \
  "sed -i 's/services.udev.packages = /services.udev.packges = /' nix/module.nix"
negative misspelt-unit-key "option .systemd.services.harkd.wantedby' does not exist" \
  "sed -i 's/      wantedBy = \\[ \"multi-user.target\" \\];/      wantedby = [ \"multi-user.target\" ];/' nix/module.nix"
negative wrong-type "is not of type .list of string'" \
  "sed -i 's/boot.kernelModules = \\[ \"snd\" \\];/boot.kernelModules = \"snd\";/' nix/module.nix"
negative wrong-setting-type "is not of type .16 bit unsigned integer" \
  "sed -i 's/^    services.hark = {/    services.hark = {\n      settings.rtsp.port = \"8554\";/' nix/images/appliance.nix"
negative drifted-hardening "drift: the module's drop-in sets Service.ProtectSystem='full'" \
  "sed -i 's/      overrideStrategy = \"asDropin\";/      overrideStrategy = \"asDropin\";\n      serviceConfig.ProtectSystem = \"full\";/' nix/module.nix"
negative drifted-config-path "drift: harkd.service reads /etc/hark/harkd.toml" \
  "sed -i 's|--config /etc/hark/hark.toml|--config /etc/hark/harkd.toml|' configs/systemd/harkd.service"
negative unit-program-kept "does not replace /bin/kill" \
  "sed -i '/--replace-fail \\/bin\\/kill/d' nix/package.nix"
negative default-differs "default settings: rtsp.port = 8555, configs/hark.toml documents 8554" \
  "sed -i 's/default = 8554;/default = 8555;/' nix/module.nix"
negative harkd-rejects "harkd check-config rejects the rendered settings" \
  "sed -i 's/default = \"127.0.0.1:8780\";/default = \"127.0.0.1:0\";/' nix/module.nix"
negative flake-module-path "module must be a function or an attribute set" \
  "sed -i 's|nixosModules.hark = import ./nix/module.nix;|nixosModules.hark = ./nix/module.nix;|' flake.nix"
negative flake-output-missing "flake structure: packages.aarch64-linux" \
  "sed -i 's/          default = self.packages.\${system}.harkd;//' flake.nix"

step "done: checks passed, $negatives negative tests failed as expected"

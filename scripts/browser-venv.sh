#!/usr/bin/env bash
# The browser tests' Python: a venv under target/tools with Selenium from PyPI.
# The browser and its driver are Debian's (chromium, chromium-driver, from
# install-deps.sh): Selenium is pointed at them and downloads nothing.
# Prints the venv's python. Safe to run again: it only installs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SELENIUM=4.51.0
venv=target/tools/browser-venv
if ! "$venv/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$SELENIUM')" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "selenium==$SELENIUM" >&2
fi
echo "$PWD/$venv/bin/python"

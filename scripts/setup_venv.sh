#!/usr/bin/env bash
# Create .venv (if missing) and install everything pinned by constraints.txt,
# then this package in editable mode.  Idempotent: re-running is a no-op when
# requirements/constraints/setup.py have not changed (Makefile stamp).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "error: Python >= 3.10 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV" || {
    echo "error: python venv failed; on Debian/Ubuntu run: sudo apt-get install python3-venv" >&2; exit 1; }
fi
start=$(date +%s)
echo "==> installing pinned dependencies (constraints.txt) into $VENV"
# pip/setuptools/wheel pinned too: colcon-core needs setuptools<80.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements.txt
echo "==> installing distilvpr (editable)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
# The ROS wheels need AMENT_PREFIX_PATH; write it into the venv's activate
# script so an activated venv just works.
if ! grep -q AMENT_PREFIX_PATH "$VENV/bin/activate"; then
  printf '\n# added by distilvpr scripts/setup_venv.sh: the ROS 2 PyPI wheels need this\nexport AMENT_PREFIX_PATH="$VIRTUAL_ENV"\nexport ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"\n' >> "$VENV/bin/activate"
fi
echo "==> set-up done in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# Install mmssl from nothing: the system FFmpeg libraries (audio decoding), a virtual
# environment in .venv, and the package with the exact versions in constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q libavutil; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
  # Some images ship without /etc/ld.so.cache and apt's trigger does not write one; without
  # it the loader cannot find libavutil and torchcodec fails to load.
  $SUDO ldconfig
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
echo "installed: $(.venv/bin/mmssl --version)"

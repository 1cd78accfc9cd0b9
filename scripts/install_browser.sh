#!/usr/bin/env bash
# Debian's headless Chromium, its driver and CJK fonts for the LlamaBoard browser test (tests/test_webui.py).
# Idempotent: returns at once when all three are present. `make test` runs it; so does nothing else.
set -euo pipefail
have_all() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && fc-list :lang=zh 2>/dev/null | grep -q .; }
if have_all; then
  echo "==> chromium, chromium-driver and CJK fonts are installed"
  exit 0
fi
packages="chromium chromium-driver fonts-noto-cjk"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the browser test needs $packages and this machine has no apt-get: install them with your package manager, then run make test again" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "error: installing $packages needs root: run \`sudo apt-get install -y $packages\`, then make test again" >&2
    exit 1
  fi
fi
echo "==> installing $packages with apt-get (first time only, ~1 minute)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq $packages >/dev/null
have_all || { echo "error: apt-get finished but chromium, chromedriver or a CJK font is still missing" >&2; exit 1; }
echo "==> chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}') installed"

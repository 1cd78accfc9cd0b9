#!/usr/bin/env bash
# The system packages the tests drive (apt-get): headless Chromium, its driver and CJK fonts for the browser tests
# (tests/train/test_llamaboard.py, tests/eval/test_review.py; the fonts also draw the scanned pages of tests/data/test_ocr.py) and
# tesseract with its Simplified Chinese data (the `--ocr-engine tesseract` test). Idempotent: returns at once when
# all are present. `make test` runs it; so does nothing else.
set -euo pipefail
have_all() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && fc-list :lang=zh 2>/dev/null | grep -q . &&
    command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx chi_sim
}
if have_all; then
  echo "==> chromium, chromium-driver, CJK fonts and tesseract (chi_sim) are installed"
  exit 0
fi
packages="chromium chromium-driver fonts-noto-cjk tesseract-ocr tesseract-ocr-chi-sim"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the tests need $packages and this machine has no apt-get: install them with your package manager, then run make test again" >&2
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
have_all || { echo "error: apt-get finished but chromium, chromedriver, a CJK font or tesseract chi_sim is still missing" >&2; exit 1; }
echo "==> chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}') installed"

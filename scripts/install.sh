#!/usr/bin/env bash
# Create .venv and install the pinned environment (requirements.lock) plus this repository's `vslm`
# package. Idempotent: returns at once when the lock file has not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${VSLM_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.vslm-install"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "==> $VENV is up to date (requirements.lock unchanged)"
  exit 0
fi

echo "==> installing the pinned environment into $VENV (first time: ~5 minutes, ~8 GB)"
"$VENV/bin/pip" install --disable-pip-version-check -q -r requirements.lock
"$VENV/bin/pip" install --disable-pip-version-check -q --no-deps -e .
"$VENV/bin/python" - <<'PY'
import llamafactory, torch, transformers, peft
print(f"==> llamafactory {llamafactory.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
PY
echo "$want" > "$stamp"

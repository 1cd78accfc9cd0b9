#!/usr/bin/env bash
# `make install-gpu`: on a CUDA machine, the packages the recipes' GPU switches need, pinned to fit requirements.lock
# (torch 2.9.1 with its CUDA 12.8 wheels). `vslm train` names the missing one when a switch is on without it.
#   flash_attn: fa2                -> flash-attn    built against the installed torch (--no-build-isolation): a prebuilt
#                                     wheel when flash-attn publishes one for this torch/CUDA/Python, else it compiles
#                                     (needs nvcc; can take an hour — MAX_JOBS=4 bounds its memory)
#   enable_liger_kernel: true      -> liger-kernel  (pure Python + Triton; torch and triton come from the lock)
#   deepspeed=recipes/deepspeed/*  -> deepspeed     already in requirements.lock; its CUDA ops compile on first use (nvcc)
#   infer_backend: vllm, vslm serve-> vllm          CUDA build in its own .venv-vllm-cuda: it needs torch 2.13 and
#                                     transformers>=5.16, the lock has torch 2.9.1 and transformers 5.6
# Not run by CI (no GPU there): tests/train/test_deepspeed.py checks these pins against the lock where pip can without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."

FLASH_ATTN="flash-attn==2.8.3"
LIGER_KERNEL="liger-kernel==0.8.5"
WHEEL="wheel==0.48.0"  # flash-attn's setup.py imports it; with --no-build-isolation it must be in the venv
VLLM="vllm==0.32.0"    # the version of the CPU build scripts/install_vllm.sh installs, so `vslm serve` flags match
VENV=${VSLM_VENV:-.venv}
VLLM_VENV=${VSLM_VLLM_CUDA_VENV:-.venv-vllm-cuda}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

if [ "${1:-}" = "--print-pins" ]; then  # for tests and humans: the pins, one per line
  printf '%s\n' "$FLASH_ATTN" "$LIGER_KERNEL" "$WHEEL" "$VLLM"
  exit 0
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "error: no NVIDIA GPU found (nvidia-smi) — make install-gpu is for a CUDA machine; on CPU the tiny profile turns these switches off" >&2
  exit 1
fi

bash scripts/install.sh
echo "==> $LIGER_KERNEL, $WHEEL into $VENV (constrained by requirements.lock)"
"$VENV/bin/pip" install --disable-pip-version-check -q -c requirements.lock "$LIGER_KERNEL" "$WHEEL"
echo "==> $FLASH_ATTN into $VENV (prebuilt wheel if published for torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'), else a long compile)"
MAX_JOBS=${MAX_JOBS:-4} "$VENV/bin/pip" install --disable-pip-version-check -q --no-build-isolation -c requirements.lock "$FLASH_ATTN"
"$VENV/bin/python" - <<'PY'
import deepspeed, flash_attn, liger_kernel, torch
assert torch.cuda.is_available(), "torch does not see the GPU"
print(f"==> torch {torch.__version__} (CUDA {torch.version.cuda}), flash-attn {flash_attn.__version__}, deepspeed {deepspeed.__version__}, liger-kernel ok")
PY

stamp="$VLLM_VENV/.vslm-install"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$VLLM" ]; then
  echo "==> $VLLM_VENV is up to date ($VLLM)"
else
  [ -x "$VLLM_VENV/bin/python" ] || "$PYTHON" -m venv "$VLLM_VENV"
  echo "==> $VLLM (CUDA) into $VLLM_VENV"
  "$VLLM_VENV/bin/pip" install --disable-pip-version-check -q "$VLLM"
  "$VLLM_VENV/bin/python" -c "import vllm, torch; assert torch.cuda.is_available(); print('==> vllm', vllm.__version__, 'torch', torch.__version__)"
  echo "$VLLM" > "$stamp"
fi
echo "==> done; serve with CUDA vLLM: export VSLM_VLLM_PYTHON=$PWD/$VLLM_VENV/bin/python"

#!/usr/bin/env bash
# GGUF export and serving (vslm export-gguf): llama-cpp-python[server] in its own virtualenv (.venv-gguf), compiled
# once from the pinned sdist with -DGGML_NATIVE=OFF (a native build on CPUs with AMX segfaults on the first evaluation
# of a quantized model), plus llama.cpp's converter tree from the same sdist (convert_hf_to_gguf.py with its own
# gguf-py, run with .venv's torch/transformers). Its dependencies and server extras are pinned by requirements-gguf.lock.
# Idempotent: returns at once when the stamp (version, build flag, the lock's hash) matches.
# First time: the wheel build takes ~15 min on 2 cores; the wheel is cached in $VSLM_CACHE/wheels and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
VENV=${VSLM_GGUF_VENV:-.venv-gguf}
CACHE=${VSLM_CACHE:-$HOME/.cache/vslm}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
SDIST_DIR="$CACHE/sdist"
SDIST="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
TREE="$CACHE/llama.cpp-$VERSION"
WHEELS="$CACHE/wheels/llama-cpp-python-$VERSION-native-off"
stamp="$VENV/.vslm-install"
LOCK=requirements-gguf.lock
want="llama-cpp-python[server]==$VERSION GGML_NATIVE=OFF $(sha256sum "$LOCK" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$TREE/convert_hf_to_gguf.py" ]; then
  echo "==> $VENV is up to date ($want; converter in $TREE)"
  exit 0
fi
pip_() { "$@" --disable-pip-version-check -q; }

if [ ! -f "$SDIST" ]; then
  echo "==> downloading the llama-cpp-python $VERSION sdist (vendors llama.cpp; ~75 MB)"
  mkdir -p "$SDIST_DIR"
  pip_ "$PYTHON" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
fi

if [ ! -f "$TREE/convert_hf_to_gguf.py" ]; then
  echo "==> extracting llama.cpp's converter tree into $TREE"
  rm -rf "$TREE.tmp" && mkdir -p "$TREE.tmp"
  tar -xzf "$SDIST" -C "$TREE.tmp" --strip-components=3 "llama_cpp_python-$VERSION/vendor/llama.cpp"
  rm -rf "$TREE" && mv "$TREE.tmp" "$TREE"
fi

wheel=$(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  echo "==> compiling llama-cpp-python $VERSION with -DGGML_NATIVE=OFF (first time ~15 min on 2 cores; cached in $WHEELS)"
  mkdir -p "$WHEELS"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" MAKEFLAGS="-j$(nproc)" \
    pip_ "$PYTHON" -m pip wheel --no-deps -w "$WHEELS" "$SDIST"
  wheel=$(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl | head -1)
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
echo "==> installing $(basename "$wheel")[server] into $VENV, its dependencies pinned by $LOCK"
pip_ "$VENV/bin/pip" install -r "$LOCK" "$wheel[server]"
"$VENV/bin/python" -c "import llama_cpp, llama_cpp.server.app; print('==> llama-cpp-python', llama_cpp.__version__, 'in $VENV')"
echo "$want" > "$stamp"

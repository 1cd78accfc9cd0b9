# The two set-up commands of the README:
#   make demo   — install (once, with vLLM for CPU where it installs), then the main job: tiny model -> train telecom_r32 -> merge -> serve -> eval -> report
#   make test   — install (once: .venv, .venv-vllm, .venv-gguf with llama.cpp compiled, Chromium, CJK fonts and tesseract for the browser and OCR tests), then the test suite (what CI runs)
.PHONY: install install-gpu demo test test-fast vllm test-packages gguf check

install:
	@bash scripts/install.sh

demo: install
	@bash scripts/install_vllm.sh || echo "==> vLLM could not be installed here: the demo serves with llamafactory-cli api"
	.venv/bin/vslm demo

test: install vllm test-packages gguf
	.venv/bin/python -m pytest --durations=15

test-fast: install
	.venv/bin/python -m pytest -m "not slow"

vllm:
	@bash scripts/install_vllm.sh

install-gpu: install  # CUDA machine only: flash-attn, liger-kernel, CUDA vLLM (.venv-vllm-cuda), pinned to fit the lock
	@bash scripts/install_gpu.sh

gguf: install  # llama-cpp-python[server] in .venv-gguf, compiled once (~15 min on 2 cores), + llama.cpp's converter
	@bash scripts/install_gguf.sh

test-packages:  # apt-get, once: headless Chromium + driver + CJK fonts (browser tests), tesseract + chi_sim (OCR test)
	@bash scripts/install_test_packages.sh

check: install
	.venv/bin/vslm check && .venv/bin/vslm validate && .venv/bin/vslm registry

# Benchmarks (not tests): the GPU plan (estimate, ~1 min), then the CPU training benchmark with the tiny
# model (~15 min on 2 cores, plus one `vslm demo` unless saves/tiny_full/telecom_r32/eval/report.json exists;
# results in benchmarks/results/). See "## Benchmarks" in README.md.
.PHONY: bench
bench: install
	.venv/bin/python benchmarks/gpu_plan.py
	.venv/bin/python benchmarks/bench_train.py

# The two set-up commands of the README:
#   make demo   — install (once, with vLLM for CPU where it installs), then the main job: tiny model -> train telecom_r32 -> merge -> serve -> eval -> report
#   make test   — install (once: .venv, .venv-vllm, Chromium for the browser test), then the test suite (what CI runs)
.PHONY: install demo test test-fast vllm browser check

install:
	@bash scripts/install.sh

demo: install
	@bash scripts/install_vllm.sh || echo "==> vLLM could not be installed here: the demo serves with llamafactory-cli api"
	.venv/bin/vslm demo

test: install vllm browser
	.venv/bin/python -m pytest --durations=15

test-fast: install
	.venv/bin/python -m pytest -m "not slow"

vllm:
	@bash scripts/install_vllm.sh

browser:  # headless Chromium + driver + CJK fonts for the LlamaBoard browser test (apt-get; once)
	@bash scripts/install_browser.sh

check: install
	.venv/bin/vslm check && .venv/bin/vslm validate && .venv/bin/vslm registry

# Benchmarks (not tests): the GPU plan (estimate, ~1 min), then the CPU training benchmark with the tiny
# model (~15 min on 2 cores, plus one `vslm demo` unless saves/tiny/telecom_r32/eval/report.json exists;
# results in benchmarks/results/). See "## Benchmarks" in README.md.
.PHONY: bench
bench: install
	.venv/bin/python benchmarks/gpu_plan.py
	.venv/bin/python benchmarks/bench_train.py

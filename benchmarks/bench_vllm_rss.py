#!/usr/bin/env python
"""Peak RSS of one vLLM (CPU) server for the tiny model, as `vslm` starts it and with the engine in the API server's
process (VLLM_ENABLE_V1_MULTIPROCESSING=0), one after the other in one run. Not a test:

    .venv/bin/python benchmarks/bench_vllm_rss.py [--requests 30]

Each server answers N short chat requests; the RSS of its process tree (benchmarks/rss_watch.tree_rss) is sampled
every 0.2 s from start to stop. Writes benchmarks/results/vllm_rss.json. The main job's serve + eval stage adds the
`vslm demo` process itself (client, retrieval, tokenizer) to one such server; issue 15's target for the whole is 4 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from _common import RESULTS, machine
from rss_watch import GIB, tree_rss

from vslm.core.paths import MODELS
from vslm.recipes.resolve import ServeSettings
from vslm.serve.servers import free_port, vllm_python, vllm_server

VARIANTS = {"as vslm starts it": {}, "engine in the API process": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}}


def measure(python: str, extra_env: dict[str, str], requests: int, log: Path) -> dict:
    saved = {k: os.environ.pop(k, None) for k in ("VLLM_ENABLE_V1_MULTIPROCESSING",)}
    os.environ.update(extra_env)
    try:
        server = vllm_server(python, str(MODELS / "tiny-qwen2"), {}, ServeSettings(max_model_len=2048, max_lora_rank=8, dtype="float32"),
                             free_port(), log)
        peak: dict = {"rss": 0, "processes": []}
        done = threading.Event()
        with server:
            root = psutil.Process(server.proc.pid)

            def sample() -> None:
                while not done.is_set():
                    found = tree_rss(root)
                    if found and found[0] > peak["rss"]:
                        peak["rss"] = found[0]
                        peak["processes"] = [(" ".join(p.cmdline())[:48], round(p.memory_info().rss / GIB, 2))
                                             for p in [root, *root.children(recursive=True)]]
                    time.sleep(0.2)

            watcher = threading.Thread(target=sample, daemon=True)
            watcher.start()
            for i in range(requests):
                httpx.post(f"{server.base_url}/chat/completions", timeout=120, json={
                    "model": "base", "messages": [{"role": "user", "content": f"光猫亮红灯怎么办？{i}"}], "max_tokens": 64})
            time.sleep(1)
            done.set()
            watcher.join()
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
    return {"env": extra_env, "peak_rss_gib": round(peak["rss"] / GIB, 2), "processes_at_peak": peak["processes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS / "vllm_rss.json")
    args = ap.parse_args()
    python = vllm_python()
    if not python:
        raise SystemExit("vLLM is not installed: make vllm")
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench-vllm-rss-") as tmp:
        runs = {name: measure(python, env, args.requests, Path(tmp) / f"vllm{i}.log") for i, (name, env) in enumerate(VARIANTS.items())}
    for name, run in runs.items():
        print(f"{name:28} peak RSS {run['peak_rss_gib']} GiB  {run['processes_at_peak']}")
    args.out.write_text(json.dumps({"started": started, "machine": machine(), "requests": args.requests, "runs": runs},
                                   ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Peak RSS, start-up and answer time of one vLLM (CPU) server for the tiny model, one layout after the other in one run:
vLLM's defaults (API server, engine and model worker in three processes, inductor-compiled kernels); the worker inside
the engine process (VLLM_ENABLE_V1_MULTIPROCESSING=0); and that plus --enforce-eager, as `vslm` serves on a CPU
(vslm.recipes.resolve.ServeSettings.cpu). Not a test:

    .venv/bin/python benchmarks/bench_vllm_rss.py [--requests 64]

Each server starts with an empty compile cache (as for a freshly fine-tuned model) and answers N short chat requests
greedily, 8 at a time as the evaluation asks; the RSS of its process tree (benchmarks/rss_watch.tree_members) is sampled
every 0.2 s from start to stop. Every layout must give the same answers. Writes benchmarks/results/vllm_rss.json. The
main job's serve + eval stage adds the `vslm demo` process itself (client, retrieval, tokenizer) to one such server;
issue 15's target for the whole is 4 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from _common import RESULTS, machine
from rss_watch import GIB, tree_members

from vslm.core.paths import MODELS
from vslm.recipes.resolve import ServeSettings
from vslm.serve.servers import free_port, vllm_python, vllm_server

CONCURRENCY = 8  # as the evaluation asks
CPU = ServeSettings.cpu(max_model_len=2048, max_lora_rank=8)
VARIANTS = {"vLLM's defaults": ServeSettings(2048, 8, CPU.dtype),
            "worker in engine": ServeSettings(2048, 8, CPU.dtype, worker_in_engine=True),
            "as vslm starts it": CPU}


def measure(python: str, settings: ServeSettings, requests: int, tmp: Path) -> dict:
    server = vllm_server(python, str(MODELS / "tiny-qwen2"), {}, settings, free_port(), tmp / "vllm.log")
    server.env["VLLM_CACHE_ROOT"] = str(tmp / "cache")  # no compiled kernels from an earlier run: a fine-tuned model is new
    peak: dict = {"rss": 0, "processes": []}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            members = tree_members(psutil.Process(server.proc.pid)) if server.proc else None
            total = sum(rss for _, _, rss in members or [])
            if total > peak["rss"]:
                peak["rss"], peak["processes"] = total, [(cmd[:48], round(rss / GIB, 2)) for _, cmd, rss in members]
            time.sleep(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    t0 = time.monotonic()
    watcher.start()
    with server:
        ready = time.monotonic()
        def ask(i: int) -> str:
            return httpx.post(f"{server.base_url}/chat/completions", timeout=120, json={
                "model": "base", "messages": [{"role": "user", "content": f"光猫亮红灯怎么办？{i}"}], "max_tokens": 64,
                "temperature": 0}).json()["choices"][0]["message"]["content"]

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            answers = list(pool.map(ask, range(requests)))
        answered = time.monotonic()
        time.sleep(1)
    done.set()
    watcher.join()
    return {"worker_in_engine": settings.worker_in_engine, "enforce_eager": settings.enforce_eager, "start_s": round(ready - t0, 1),
            "answer_s": round(answered - ready, 1), "peak_rss_gib": round(peak["rss"] / GIB, 2),
            "processes_at_peak": peak["processes"], "answers": answers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "vllm_rss.json")
    args = ap.parse_args()
    python = vllm_python()
    if not python:
        raise SystemExit("vLLM is not installed: make vllm")
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench-vllm-rss-") as tmp:
        runs = {name: measure(python, settings, args.requests, Path(tmp) / str(i)) for i, (name, settings) in enumerate(VARIANTS.items())}
    for name, run in runs.items():
        print(f"{name:24} start {run['start_s']:>5} s  {args.requests} answers {run['answer_s']:>5} s  "
              f"peak RSS {run['peak_rss_gib']} GiB  {run['processes_at_peak']}")
    same = len({json.dumps(run.pop("answers")) for run in runs.values()}) == 1
    print(f"same greedy answers: {same}")
    args.out.write_text(json.dumps({"started": started, "machine": machine(), "requests": args.requests,
                                               "same_answers": same, "runs": runs},
                                   ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Eval-client ceiling: requests/s against a scripted zero-latency OpenAI-compatible server at
concurrency 1, 8 and 32, measured side by side in one run (target: >= 300 req/s at 32, so the client
never bounds vLLM). Not a test: run `.venv/bin/python benchmarks/bench_client.py [--requests N]`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from vslm.core.paths import ROOT
from vslm.eval.client import ask_all
from vslm.serve.servers import Server, free_port

SCRIPTED = ROOT / "tests" / "helpers" / "scripted.py"  # the test suite's scripted OpenAI-compatible server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "script.json"
        cfg.write_text(json.dumps({"default": "ok"}))
        port = free_port()
        server = Server("scripted", [sys.executable, str(SCRIPTED), "--port", str(port), "--config", str(cfg)],
                        port, tmp / "scripted.log")
        with server.start(timeout=60):
            results = {}
            for conc in args.concurrency:
                rows = [{"id": f"{conc}-{i}", "instruction": f"q{conc}-{i}", "input": ""} for i in range(args.requests)]
                t0 = time.perf_counter()
                ask_all(server.base_url, "base", rows, system=None, cache_path=tmp / f"c{conc}.jsonl", concurrency=conc,
                        max_tokens=8, label=f"c{conc}")
                elapsed = time.perf_counter() - t0
                results[conc] = {"seconds": round(elapsed, 2), "req_per_s": round(args.requests / elapsed, 1)}
    base = results[args.concurrency[0]]["req_per_s"]
    print(f"{'concurrency':>11} {'seconds':>8} {'req/s':>8} {'vs c=' + str(args.concurrency[0]):>8}")
    for conc, r in results.items():
        print(f"{conc:>11} {r['seconds']:>8} {r['req_per_s']:>8} {r['req_per_s'] / base:>7.1f}x")
    print(json.dumps({"benchmark": "eval_client_ceiling", "requests": args.requests, "results": results}))


if __name__ == "__main__":
    main()

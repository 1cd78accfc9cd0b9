#!/usr/bin/env python
"""vLLM (CPU) serving the tiny model + a recipe's adapter: held-out evaluation at concurrency 1 vs 16,
side by side in one run; writes benchmarks/results/vllm_concurrency.json. Not a test: `.venv/bin/python benchmarks/bench_vllm.py [--recipe telecom_r32]`
(needs `make vllm` and a tiny-profile adapter: `vslm train telecom_r32 --profile tiny`)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vslm.eval.evaluate import evaluate, load_eval_rows
from vslm.core.jsonio import atomic_write_json
from vslm.recipes.matrix import get_recipe
from vslm.recipes.resolve import resolve
from vslm.core.paths import ROOT
from vslm.serve.servers import free_port, recipe_vllm_server, vllm_python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", default="telecom_r32")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 16])
    args = parser.parse_args()
    python = vllm_python()
    if not python:
        raise SystemExit("vLLM is not installed: make vllm")
    recipe = get_recipe(args.recipe)
    plan = resolve(recipe, "tiny")
    rows = load_eval_rows(recipe["eval_set"], args.limit)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = recipe_vllm_server(python, plan, free_port(), Path(tmp) / "vllm.log")
        with server.start(timeout=600):
            for conc in args.concurrency:
                t0 = time.perf_counter()
                evaluate(rows, base_url=server.base_url, model=recipe.name, system=recipe["system"],
                         cache_path=Path(tmp) / f"c{conc}.jsonl", max_tokens=64, concurrency=conc, label=f"c{conc}")
                results[conc] = round(time.perf_counter() - t0, 2)
    first = results[args.concurrency[0]]
    for conc, secs in results.items():
        print(f"concurrency {conc:>3}: {secs:>7} s  {len(rows) / secs:6.1f} req/s  {first / secs:5.1f}x")
    record = {"benchmark": "vllm_concurrency", "recipe": recipe.name, "rows": len(rows), "max_tokens": 64, "seconds": results,
              "speedup": {c: round(first / s, 2) for c, s in results.items()}}
    atomic_write_json(ROOT / "benchmarks" / "results" / "vllm_concurrency.json", record)
    print(json.dumps(record))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark (not a test): document distillation at concurrency 8 vs 1 against the scripted teacher.

    .venv/bin/python benchmarks/bench_distill.py [--latency-ms 200] [--workers 8]

The scripted teacher answers every request after `latency_ms`, so the wall time is dominated by waiting on
the teacher, as with a real API. One document set: 6 chunks x 3 questions (answers, LLM-judge scores and one
paraphrase each). Each run starts from an empty cache. Prints both wall times, the ratio (target >= 6x) and
the same as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from vslm.core.paths import ROOT
from vslm.data.distill import Options, distill
from vslm.core.endpoint import EndpointConfig
from vslm.serve.servers import Server, free_port

SCRIPTED = ROOT / "tests" / "helpers" / "scripted.py"  # the test suite's scripted OpenAI-compatible server


def document(folder: Path) -> Path:
    rules = (ROOT / "datasets" / "finance" / "reimbursement_rules.md").read_text(encoding="utf-8")
    body = "\n".join(l for l in rules.splitlines() if not l.startswith("#") and l.strip())
    (folder / "docs").mkdir()
    (folder / "docs" / "rules.md").write_text(body[:3100], encoding="utf-8")  # 6 chunks of ~580 characters at size 600
    return folder / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    opts = Options(size=600, overlap=100, questions=3, paraphrases=1, judge=4)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = document(tmp)
        script = tmp / "script.json"
        script.write_text(json.dumps({"teacher": True, "models": ["teacher"], "latency_ms": args.latency_ms}))
        port = free_port()
        server = Server("scripted", [sys.executable, str(SCRIPTED), "--port", str(port), "--config", str(script)],
                        port, tmp / "scripted.log")
        results = {}
        with server.start(timeout=60):
            teacher = EndpointConfig(server.base_url, "teacher", ["sk-bench-1", "sk-bench-2"])
            (tmp / "warm").mkdir()  # untimed warm-up: one-off imports (the openai client loads lazily) and connections
            (tmp / "warm" / "w.md").write_text((source / "rules.md").read_text(encoding="utf-8")[:300], encoding="utf-8")
            distill(tmp / "warm", "warm", teacher, options=opts, work_dir=tmp / "warmwork", out_dir=tmp / "warmds",
                    registry_path=tmp / "dataset_info.json")
            for workers in (args.workers, 1):
                start = time.perf_counter()
                summary = distill(source, f"bench{workers}", teacher, options=opts, concurrency=workers,
                                  work_dir=tmp / f"work{workers}", out_dir=tmp / f"ds{workers}",
                                  registry_path=tmp / "dataset_info.json")
                results[workers] = {"seconds": round(time.perf_counter() - start, 3), "requests": summary["requests"]["sent"],
                                    "chunks": summary["chunks"], "questions": summary["questions"], "rows": summary["rows"]}
    fast, slow = results[args.workers], results[1]
    ratio = slow["seconds"] / fast["seconds"]
    print(f"{fast['chunks']} chunks, {fast['questions']} questions, {fast['requests']} teacher requests of {args.latency_ms} ms each")
    print(f"concurrency {args.workers}: {fast['seconds']:.2f} s")
    print(f"concurrency 1: {slow['seconds']:.2f} s")
    print(f"speed-up: {ratio:.1f}x (target >= 6x) — {'OK' if ratio >= 6 else 'BELOW TARGET'}")
    print(json.dumps({"benchmark": "distill", "latency_ms": args.latency_ms, f"concurrency_{args.workers}": fast,
                      "concurrency_1": slow, "speedup": round(ratio, 2), "target": 6.0}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Peak RSS per stage of a running `vslm demo` (or any process tree), sampled with psutil. Not a test.

    .venv/bin/python benchmarks/rss_watch.py --pid <pid of `vslm demo`> [--interval 0.25] [--out benchmarks/results/demo_rss.json]
    .venv/bin/python benchmarks/rss_watch.py -- .venv/bin/vslm demo        # start it and watch it

Only reads /proc (via psutil) — it never signals the watched processes. Every sample sums the RSS of the
process and all its descendants (shared pages counted once per process, so it over- rather than
under-states) and is attributed to a stage by the descendants' command lines:
llamafactory-cli train -> train (with do_train=false -> heldout_loss), llamafactory-cli export -> merge, a vLLM or
llamafactory-cli api server -> serve_and_eval, otherwise -> other (cached tiny model, report). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

GIB = 1024 ** 3


def stage_of(cmdlines: list[str]) -> str:
    """The `vslm demo` stage (its context.timings_s names) a process tree's command lines show."""
    joined = "\n".join(cmdlines)
    if "llamafactory-cli" in joined and "do_train=false" in joined:  # the demo's held-out loss run (LlamaFactory's eval loop)
        return "heldout_loss"
    if "llamafactory-cli train" in joined or ("llamafactory-cli" in joined and " train " in joined):
        return "train"
    if "llamafactory-cli export" in joined or ("llamafactory-cli" in joined and " export " in joined):
        return "merge"
    if "vllm" in joined or ("llamafactory-cli" in joined and " api " in joined):
        return "serve_and_eval"
    return "other"


def tree_members(root) -> list[tuple[int, str, int]] | None:
    """(pid, command line, RSS bytes) of a psutil process and each of its live descendants; None once it is gone."""
    import psutil

    try:
        if not root.is_running() or root.status() == psutil.STATUS_ZOMBIE:
            return None
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    members = []
    for p in procs:
        try:
            rss = p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        try:
            cmd = " ".join(p.cmdline()) + " "
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            cmd = ""
        members.append((p.pid, cmd, rss))
    return members


def tree_rss(root) -> tuple[int, list[str]] | None:
    """(RSS summed over a psutil process and all its descendants, the descendants' command lines); None once the
    process is gone."""
    members = tree_members(root)
    if members is None:
        return None
    return sum(rss for _, _, rss in members), [cmd for pid, cmd, _ in members if pid != root.pid and cmd]


def watch(pid: int, interval: float) -> dict:
    import psutil

    root = psutil.Process(pid)
    stages: dict[str, dict] = {}
    peak = 0
    start = time.time()
    order: list[str] = []
    while (sample := tree_rss(root)) is not None:
        total, cmds = sample
        name = stage_of(cmds)
        now = time.time() - start
        st = stages.setdefault(name, {"first_s": now, "last_s": now, "peak_rss_gib": 0.0})
        if not order or order[-1] != name:
            order.append(name)
        st["last_s"] = now
        st["peak_rss_gib"] = max(st["peak_rss_gib"], round(total / GIB, 2))
        peak = max(peak, total)
        time.sleep(interval)
    return {"pid": pid, "watched_s": round(time.time() - start, 1), "peak_rss_gib": round(peak / GIB, 2),
            "stages": stages, "order": order}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--out", type=Path)
    parser.add_argument("cmd", nargs="*", help="command to start and watch (after --)")
    args = parser.parse_args()
    proc = None
    if args.pid is None:
        if not args.cmd:
            parser.error("give --pid or a command after --")
        proc = subprocess.Popen(args.cmd)
        args.pid = proc.pid
    result = watch(args.pid, args.interval)
    if proc is not None:
        result["rc"] = proc.wait()
    print(f"{'stage':16} {'seen from s':>11} {'to s':>8} {'peak RSS (tree)':>16}")
    for name, st in result["stages"].items():
        print(f"{name:16} {st['first_s']:>11.1f} {st['last_s']:>8.1f} {st['peak_rss_gib']:>12} GiB")
    print(f"{'all':16} {0:>11.1f} {result['watched_s']:>8.1f} {result['peak_rss_gib']:>12} GiB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps({"benchmark": "demo_rss", **result}))


if __name__ == "__main__":
    sys.exit(main())

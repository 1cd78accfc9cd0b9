#!/usr/bin/env python
"""Training benchmarks on this CPU with the tiny model, measured side by side in one run. Not a test:

    .venv/bin/python benchmarks/bench_train.py [--steps 20] [--repeats 2] [--e2e auto|run|reuse|skip]
    .venv/bin/python benchmarks/bench_train.py --parts c --e2e reuse --rss-json benchmarks/results/demo_rss.json

a. Framework overhead: `llamafactory-cli train recipes/telecom_r32.yaml` + its tiny-profile overrides
   (vslm.recipes.resolve) + max_steps=N, no eval, no checkpoints, output to a temp dir — against a
   hand-written PEFT + transformers Trainer loop (benchmarks/hf_lora_baseline.py) on the same rows, chat
   format, label masking, LoRA r32/α64 on all linear projections, cutoff, batch, steps, lr, fp32 CPU.
   tokens/s = tokens fed to the model (Trainer's num_input_tokens_seen="all", padding included) ÷
   train_runtime; runs alternate A B B A… so drift on a shared machine hits both sides. Target ≥ 0.9×.
b. Padding waste: for every recipe's training datasets (rows tokenised by LlamaFactory's own pipeline with
   the real Qwen tokenizer), non-padding ÷ processed tokens at the recipe's batch and cutoff without packing
   (collator pads each micro-batch to its longest row, multiple of 8; mean over shuffles), with packing and
   with neat_packing (greedy knapsack into cutoff_len blocks per preprocessing shard, exactly as
   LlamaFactory packs — checked against its packed dataset in this run); and the measured tokens/s of short
   llamafactory runs with packing=true / neat_packing=true vs false (telecom, tiny profile).
c. End to end: wall time and peak RSS (process tree, sampled with psutil) of every stage of `vslm demo`: wall times
   are the demo's own (its report.json's context.timings_s), RSS is attributed to a stage by the tree's command lines.
   auto: if saves/tiny_full/telecom_r32/eval/report.json exists its context.timings_s are reused (add peak RSS
   recorded by benchmarks/rss_watch.py on that demo with --rss-json); otherwise the demo runs once with
   VSLM_SAVES in a throw-away folder under saves/, so nobody's saves/tiny is touched.
   Targets (issue 15): ≤ 6 min after the first tiny-model build and ≤ 4 GB peak RSS, on 2 cores.

--parts c (or a, b, ab, …) re-runs only those parts and keeps the others from --out.
Prints the tables, then one JSON line; writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    ROOT,
    lf_dataset,
    machine,
    packed_blocks,
    packed_blocks_lf,
    padded_tokens,
    pt_blocks,
    recipe_config,
    row_lengths,
)
from rss_watch import stage_of, tree_rss

from vslm.core.paths import rel
from vslm.recipes.matrix import format_overrides, get_recipe, load_matrix, load_recipes
from vslm.recipes.resolve import DEMO_PROFILE, resolve

RECIPE = "telecom_r32"
TINY = "tiny-qwen2"
GIB = 1024 ** 3


# ---------------------------------------------------------------- measured subprocesses (wall time, peak RSS)

class Measured:
    """Run a command, tee its output to a log, sample the RSS of its whole process tree every `interval` s.
    `stage_of(command lines of the tree's descendants)` may name the stage running (rss_watch.stage_of); peaks are
    then kept per stage too (bytes)."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None, interval: float = 0.25,
                 stage_of=None, echo: bool = False):
        self.cmd, self.log, self.env, self.interval, self.stage_of, self.echo = cmd, log, env, interval, stage_of, echo
        self.peak = 0
        self.stages: dict[str, int] = {}
        self._done = threading.Event()

    def _sample(self, proc) -> None:
        import psutil

        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            total, cmds = tree_rss(root) or (0, [])  # the same process-tree sum as benchmarks/rss_watch.py
            self.peak = max(self.peak, total)
            if self.stage_of and total:
                name = self.stage_of(cmds)
                self.stages[name] = max(self.stages.get(name, 0), total)
            self._done.wait(self.interval)

    def run(self) -> dict[str, Any]:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(self.log, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(self.cmd, cwd=ROOT, env={**os.environ, **(self.env or {})}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
            sampler = threading.Thread(target=self._sample, args=(proc,), daemon=True)
            sampler.start()
            for line in proc.stdout:
                log.write(line)
                if self.echo:
                    print("    | " + line.rstrip()[:160], flush=True)
            rc = proc.wait()
            self._done.set()
            sampler.join()
        wall = time.perf_counter() - start
        return {"rc": rc, "wall_s": wall, "peak_rss": self.peak, "stages": self.stages}


def tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])


def ensure_tiny() -> Path:
    model = ROOT / "models" / TINY
    if not (model / "config.json").is_file():
        from vslm.models.tiny import build_tiny

        print(f"[bench] {rel(model)} missing: building it (waits if someone else is building it)", flush=True)
        build_tiny(TINY)
    return model


# ---------------------------------------------------------------- a. framework overhead

def lf_overrides(steps: int, out: Path, **extra: Any) -> dict[str, Any]:
    recipe = get_recipe(RECIPE)
    over = dict(resolve(recipe, "tiny").stage("train").overrides)
    # no checkpoint inside the run (`save_strategy=no` would reach LlamaFactory's CLI parser as YAML false);
    # eval is off already (val_size 0, do_eval false by default)
    over.update(max_steps=steps, output_dir=str(out), save_steps=10 ** 6, plot_loss=False, overwrite_output_dir=True, include_num_input_tokens_seen="all", report_to="none",
                disable_tqdm=True, **extra)
    return over


def run_llamafactory(steps: int, out: Path, label: str, **extra: Any) -> dict[str, Any]:
    recipe = get_recipe(RECIPE)
    over = lf_overrides(steps, out, **extra)
    cli = str(Path(sys.executable).with_name("llamafactory-cli"))
    cmd = [cli, "train", str(recipe.stage("train").path), *format_overrides(over)]
    res = Measured(cmd, out.with_suffix(".log")).run()
    if res["rc"] != 0:
        raise SystemExit(f"[bench] {label} failed (exit {res['rc']}):\n{tail(out.with_suffix('.log'))}")
    state = json.loads((out / "trainer_state.json").read_text())
    results = json.loads((out / "all_results.json").read_text())
    tokens = state["num_input_tokens_seen"]
    runtime = results["train_runtime"]
    return {"label": label, "steps": state["global_step"], "tokens": tokens, "train_runtime_s": round(runtime, 2),
            "tokens_per_s": round(tokens / runtime, 1), "wall_s": round(res["wall_s"], 1),
            "peak_rss_gib": round(res["peak_rss"] / GIB, 2), "train_loss": results.get("train_loss"),
            "command": "llamafactory-cli train " + " ".join(cmd[2:])}


def run_baseline(steps: int, out: Path, model: Path) -> dict[str, Any]:
    recipe = get_recipe(RECIPE)
    tiny = load_matrix()["profiles"]["tiny"]
    data = ROOT / "datasets" / "telecom" / "telecom_train.jsonl"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "hf_lora_baseline.py"), "--model", str(model), "--data", str(data),
           "--system", recipe["system"], "--cutoff", str(tiny["cutoff_len"]), "--batch", str(tiny["per_device_train_batch_size"]),
           "--steps", str(steps), "--lr", str(tiny["learning_rate"]), "--rank", str(recipe["lora"]["rank"]),
           "--alpha", str(recipe["lora"]["alpha"]), "--dropout", str(recipe["lora"]["dropout"]),
           "--warmup-ratio", str(recipe["warmup_ratio"]), "--seed", str(recipe["seed"]), "--out", str(out)]
    res = Measured(cmd, out.with_suffix(".log")).run()
    if res["rc"] != 0:
        raise SystemExit(f"[bench] PEFT + Trainer baseline failed (exit {res['rc']}):\n{tail(out.with_suffix('.log'))}")
    r = json.loads((out / "baseline_results.json").read_text())
    return {"label": "PEFT + Trainer (hand-written)", "steps": r["steps"], "tokens": r["num_input_tokens_seen"],
            "train_runtime_s": round(r["train_runtime"], 2), "tokens_per_s": round(r["tokens_per_s"], 1),
            "wall_s": round(res["wall_s"], 1), "peak_rss_gib": round(res["peak_rss"] / GIB, 2),
            "train_loss": r.get("train_loss"), "trainable_params": r.get("trainable_params")}


def tokenisation_parity(model: Path) -> dict[str, Any]:
    """The hand-written encoding must feed the same ids and labels as LlamaFactory, or (a) compares apples to pears."""
    from hf_lora_baseline import encode_row, load_rows
    from transformers import AutoTokenizer

    recipe = get_recipe(RECIPE)
    cutoff = load_matrix()["profiles"]["tiny"]["cutoff_len"]
    ds, _ = lf_dataset(recipe_config(recipe.stage("train").path), recipe["family"], packing=False, cutoff_len=cutoff)
    tok = AutoTokenizer.from_pretrained(model)
    rows = load_rows(ROOT / "datasets" / "telecom" / "telecom_train.jsonl")
    same = sum(1 for r, ids, labels in zip(rows, ds["input_ids"], ds["labels"])
               if encode_row(tok, r, recipe["system"], cutoff) == {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return {"rows": len(rows), "identical": same}


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# ---------------------------------------------------------------- b. padding waste

def padding_table() -> list[dict[str, Any]]:
    rows = []
    for name, recipe in load_recipes().items():
        for stage in recipe.train_stages:
            cfg = recipe_config(stage.path)
            family = recipe["family"]
            if stage.kind == "train_pt":
                pt = pt_blocks(cfg, family)
                rows.append({"recipe": f"{name} (pt)", "datasets": cfg["dataset"], "rows": pt["rows"],
                             "batch": cfg["per_device_train_batch_size"], "cutoff": cfg["cutoff_len"],
                             "as_shipped": "pt: always packed", "no_packing": None, "packing": 1.0, "neat_packing": None,
                             "pt": pt})
                continue
            lengths = row_lengths(cfg, family)
            nopack = padded_tokens(lengths, cfg["per_device_train_batch_size"], seed=cfg.get("seed", 42))
            packed = packed_blocks(cfg, family)
            shipped = "neat_packing" if cfg.get("neat_packing") else "packing" if cfg.get("packing") else "no packing"
            rows.append({"recipe": name, "datasets": cfg["dataset"], "rows": len(lengths),
                         "batch": cfg["per_device_train_batch_size"], "cutoff": cfg["cutoff_len"], "as_shipped": shipped,
                         "no_packing": round(nopack["useful_fraction"], 4), "packing": round(packed["useful_fraction"], 4),
                         "neat_packing": round(packed["useful_fraction"], 4), "tokens_useful": nopack["useful"],
                         "tokens_processed_no_packing": nopack["processed"], "tokens_processed_packed": packed["processed"],
                         "blocks": packed["blocks"], "rows_sharing_a_block": packed["rows_sharing_a_block"],
                         "blocks_with_several_rows": packed["blocks_with_several_rows"],
                         "max_rows_per_block": packed["max_rows_per_block"], "preprocessing_workers": packed["workers"],
                         "updates": optimizer_updates(cfg, len(lengths), packed["blocks"])})
    return rows


def optimizer_updates(cfg: dict[str, Any], rows: int, blocks: int) -> dict[str, int]:
    """Optimizer steps of the whole run (one device) without and with packing: what packing costs a short run."""
    per_update = cfg["per_device_train_batch_size"] * cfg.get("gradient_accumulation_steps", 1)
    epochs = float(cfg.get("num_train_epochs", 3))
    return {"no_packing": round(-(-rows // per_update) * epochs), "packed": round(-(-blocks // per_update) * epochs)}


# ---------------------------------------------------------------- c. end to end

def per_stage(timings: dict[str, float], rss_stages: dict[str, dict]) -> dict[str, dict]:
    """Wall time (the demo's own context.timings_s) and peak RSS (sampled, by rss_watch.stage_of) of each demo stage."""
    return {k: {"wall_s": v, "peak_rss_gib": (rss_stages.get(k) or {}).get("peak_rss_gib")}
            for k, v in timings.items() if not k.startswith("total")}


def end_to_end(mode: str, rss_json: Path | None = None) -> dict[str, Any]:
    existing = resolve(get_recipe(RECIPE), DEMO_PROFILE).report_json
    if mode == "skip":
        return {"mode": "skipped"}
    report = json.loads(existing.read_text()) if existing.is_file() else None
    timings = ((report or {}).get("context") or {}).get("timings_s") or {}
    if mode == "auto" and report is not None and timings.get("train") == 0:
        print(f"[bench] c. {rel(existing)} comes from `vslm demo --skip-train`: not reusable as an end-to-end time",
              flush=True)
        report = None
    if mode in ("auto", "reuse") and report is not None:
        rss = json.loads(rss_json.read_text()) if rss_json and rss_json.is_file() else None
        stages = per_stage(timings, (rss or {}).get("stages", {}))
        total = (timings.get("total") or timings.get("total_before_report")
                 or round(sum(v["wall_s"] for v in stages.values()), 1))
        coverage = ""
        if rss and rss.get("watched_s", 0) < total - 5:
            coverage = (f" (the watcher was attached {total - rss['watched_s']:.0f} s into the run, so it saw the last "
                        f"{rss['watched_s']:.0f} s: part of train, then merge, serve_and_eval and the report)")
        if rss and "other" in rss.get("stages", {}):
            coverage += f"; outside the subprocess stages (in-process tiny model, report) peak {rss['stages']['other']['peak_rss_gib']} GiB"
        if "total" not in timings:
            coverage += "; total excludes the report step (not in context.timings_s)"
        if timings.get("train") == 0:
            coverage += "; WARNING: that demo ran with --skip-train (train 0 s) — not an end-to-end time"
        return {"mode": "reused", "source": rel(existing), "timings_s": timings,
                "backend": (report.get("context") or {}).get("backend"), "stages": stages, "total_s": total,
                "peak_rss_gib": (rss or {}).get("peak_rss_gib"),
                "rss_source": None if rss is None else str(rss_json),
                "skip_train": timings.get("train") == 0,
                "note": ("wall times from the report's context.timings_s; " + (
                    "peak RSS sampled with benchmarks/rss_watch.py on that same demo run" + coverage if rss else
                    "RSS not measured (run with --e2e run, or watch a demo with benchmarks/rss_watch.py and pass --rss-json)"))}
    if mode == "reuse":
        return {"mode": "missing", "note": f"{rel(existing)} not found"}
    # The demo writes under $VSLM_SAVES; a throw-away folder inside the (git-ignored) saves/ keeps everybody's
    # saves/tiny untouched and keeps the paths relative to the repository, as the demo prints them.
    (ROOT / "saves").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-demo-", dir=ROOT / "saves") as tmp:
        saves = Path(tmp).relative_to(ROOT)
        log = Path(tmp) / "demo.log"
        print(f"[bench] c. running `vslm demo` once (VSLM_SAVES={saves})", flush=True)
        res = Measured([str(Path(sys.executable).with_name("vslm")), "demo"], log, env={"VSLM_SAVES": str(saves)},
                       stage_of=stage_of).run()
        report_path = ROOT / saves / DEMO_PROFILE / RECIPE / "eval" / "report.json"
        report = json.loads(report_path.read_text()) if report_path.is_file() else None
        error = None if res["rc"] == 0 else tail(log, 15)
    context = (report or {}).get("context") or {}
    rss_stages = {name: {"peak_rss_gib": round(peak / GIB, 2)} for name, peak in res["stages"].items()}
    out = {"mode": "ran", "rc": res["rc"], "stages": per_stage(context.get("timings_s") or {}, rss_stages),
           "total_s": round(res["wall_s"], 1), "peak_rss_gib": round(res["peak_rss"] / GIB, 2),
           "timings_s": context.get("timings_s"), "backend": context.get("backend"),
           "note": "wall times from the demo's report.json (context.timings_s), total from this run; peak RSS per stage "
                   "by the process tree's command lines (rss_watch.stage_of)" + (
                       f"; outside the subprocess stages (in-process tiny model, report) peak {rss_stages['other']['peak_rss_gib']} GiB"
                       if "other" in rss_stages else "")}
    if error:
        out["error"] = error
    return out


# ---------------------------------------------------------------- printing

def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_overhead(o: dict[str, Any]) -> None:
    print(f"\n== a. framework overhead: {RECIPE}, tiny profile (models/{TINY}, fp32 CPU, batch {o['batch']}, cutoff {o['cutoff']}, "
          f"LoRA r32/α64 all linear), {o['steps']} steps, runs in order {' '.join(o['order'])}")
    print(f"{'run':32} {'steps':>5} {'tokens':>7} {'train s':>8} {'tokens/s':>9} {'wall s':>7} {'peak RSS':>9}")
    for r in o["runs"]:
        print(f"{r['label']:32} {r['steps']:>5} {r['tokens']:>7} {r['train_runtime_s']:>8} {r['tokens_per_s']:>9} {r['wall_s']:>7} "
              f"{r['peak_rss_gib']:>7} G")
    print(f"median tokens/s: LlamaFactory {o['llamafactory_tokens_per_s']}, hand-written {o['baseline_tokens_per_s']} -> "
          f"ratio {o['ratio']}x (target >= 0.9x); tokenisation identical on {o['parity']['identical']}/{o['parity']['rows']} rows")


def print_padding(p: dict[str, Any]) -> None:
    print("\n== b. useful-token fraction (non-padding / processed) at each recipe's batch and cutoff")
    print(f"{'recipe':20} {'datasets':27} {'rows':>5} {'batch':>5} {'cutoff':>6} {'shipped':>13} {'no packing':>10} "
          f"{'packing':>8} {'neat':>7}  rows sharing a block (neat packing's guard)")
    for r in p["recipes"]:
        if r.get("pt"):
            pt = r["pt"]
            note = (f"pt concatenates per shard ({pt['workers']} workers): {pt['blocks']} blocks; {pt['dropped_tokens']} of "
                    f"{pt['corpus_tokens']} corpus tokens dropped as shard remainders")
            print(f"{r['recipe']:20} {r['datasets']:27} {r['rows']:>5} {r['batch']:>5} {r['cutoff']:>6} {'always':>13} {'-':>10} "
                  f"{pct(1.0):>8} {'-':>7}  {note}")
            continue
        guard = (f"{r['rows_sharing_a_block']}/{r['rows']} rows in {r['blocks_with_several_rows']} multi-row blocks "
                 f"(up to {r['max_rows_per_block']})")
        if r.get("updates"):  # results written before the update count kept their rows as they were
            guard += f"; updates {r['updates']['no_packing']} -> {r['updates']['packed']} packed"
        print(f"{r['recipe']:20} {r['datasets']:27} {r['rows']:>5} {r['batch']:>5} {r['cutoff']:>6} {r['as_shipped']:>13} "
              f"{pct(r['no_packing']):>10} {pct(r['packing']):>8} {pct(r['neat_packing']):>7}  {guard}")
    c = p["packing_check"]
    print(f"packing simulated exactly as LlamaFactory packs (checked on {RECIPE}: {c['simulated_blocks']} vs "
          f"{c['llamafactory_blocks']} blocks, {'match' if c['match'] else 'MISMATCH'}). packing and neat_packing build the same "
          "blocks; with plain packing every row in a multi-row block attends to its neighbours — neat_packing's "
          "block-diagonal mask is what keeps them independent.")
    tp = p["tiny_telecom"]
    print(f"\nmeasured, {RECIPE} tiny profile (cutoff {tp['cutoff']}, batch {tp['batch']}): useful fraction no packing "
          f"{pct(tp['no_packing']['useful_fraction'])}, packed {pct(tp['packed']['useful_fraction'])} "
          f"({tp['packed']['rows_sharing_a_block']}/{tp['packed']['rows']} rows share a block)")
    print(f"{'run':28} {'tokens/s':>9} {'useful':>7} {'useful tok/s':>12} {'vs no packing':>13}")
    for m in tp["measured"]:
        print(f"{m['label']:28} {m['tokens_per_s']:>9} {pct(m['useful_fraction']):>7} {m['useful_tokens_per_s']:>12} "
              f"{m['useful_vs_no_packing']:>12}x")


def print_e2e(e: dict[str, Any]) -> None:
    print("\n== c. end to end: `vslm demo` (tiny model -> train -> merge -> serve+eval -> report)")
    if not e.get("stages"):
        print(f"  {e}")
        return
    print(f"{'stage':16} {'wall s':>8} {'peak RSS (tree)':>16}")
    for name, st in e["stages"].items():
        rss = "-" if st.get("peak_rss_gib") is None else f"{st['peak_rss_gib']} GiB"
        print(f"{name:16} {st['wall_s']:>8} {rss:>16}")
    total_rss = "-" if e.get("peak_rss_gib") is None else f"{e['peak_rss_gib']} GiB"
    print(f"{'total':16} {e.get('total_s'):>8} {total_rss:>16}   (targets: <= 360 s, <= 4 GB on 2 cores; "
          f"backend {e.get('backend')}; {e['mode']})")
    if e.get("note"):
        print(f"  {e['note']}")
    if e.get("skip_train"):
        print("  WARNING: the reused report comes from `vslm demo --skip-train`; its train stage took 0 s")
    if e.get("error"):
        print(f"  the demo exited with {e.get('rc')}:\n" + "\n".join("    " + l for l in e["error"].splitlines()))


# ---------------------------------------------------------------- main

def part_a(steps: int, repeats: int, model: Path, tmp: Path) -> dict[str, Any]:
    tiny = load_matrix()["profiles"]["tiny"]
    parity = tokenisation_parity(model)
    print(f"[bench] a. tokenisation parity: hand-written == LlamaFactory on {parity['identical']}/{parity['rows']} rows", flush=True)
    order: list[str] = []
    for i in range(repeats):
        order += ["lf", "hf"] if i % 2 == 0 else ["hf", "lf"]
    runs, lf_runs, hf_runs = [], [], []
    for i, side in enumerate(order):
        print(f"[bench] a. run {i + 1}/{len(order)}: {'llamafactory-cli train' if side == 'lf' else 'PEFT + Trainer'}", flush=True)
        if side == "lf":
            r = run_llamafactory(steps, tmp / f"lf{i}", "llamafactory-cli train")
            lf_runs.append(r)
        else:
            r = run_baseline(steps, tmp / f"hf{i}", model)
            hf_runs.append(r)
        runs.append(r)
    lf_tps = round(median([r["tokens_per_s"] for r in lf_runs]), 1)
    hf_tps = round(median([r["tokens_per_s"] for r in hf_runs]), 1)
    return {"parity": parity, "runs": runs, "order": order, "llamafactory_tokens_per_s": lf_tps, "baseline_tokens_per_s": hf_tps,
            "ratio": round(lf_tps / hf_tps, 3), "target": 0.9, "steps": steps, "batch": tiny["per_device_train_batch_size"],
            "cutoff": tiny["cutoff_len"]}


def tiny_profile_padding() -> tuple[dict[str, Any], dict[str, Any]]:
    """RECIPE's rows at the tiny profile's batch and cutoff: fed unpacked (padded_tokens) and packed (packed_blocks)."""
    tiny, recipe = load_matrix()["profiles"]["tiny"], get_recipe(RECIPE)
    cfg = recipe_config(recipe.stage("train").path)
    lengths = row_lengths(cfg, recipe["family"], cutoff_len=tiny["cutoff_len"])
    return (padded_tokens(lengths, tiny["per_device_train_batch_size"], seed=recipe["seed"]),
            packed_blocks(cfg, recipe["family"], cutoff_len=tiny["cutoff_len"], workers=tiny["preprocessing_num_workers"]))


def part_b(steps: int, no_neat: bool, lf_tps: float | None, tmp: Path) -> dict[str, Any]:
    tiny = load_matrix()["profiles"]["tiny"]
    print("[bench] b. padding waste per recipe (LlamaFactory tokenisation, real Qwen tokenizer)", flush=True)
    table = padding_table()
    recipe = get_recipe(RECIPE)
    cfg = recipe_config(recipe.stage("train").path)
    tiny_nopack, tiny_packed = tiny_profile_padding()
    lf_check = packed_blocks_lf(cfg, recipe["family"])
    sim = next(r for r in table if r["recipe"] == RECIPE)
    check = {"llamafactory_blocks": lf_check["blocks"], "simulated_blocks": sim["blocks"],
             "llamafactory_useful": lf_check["useful"], "simulated_useful": sim["tokens_useful"],
             "match": lf_check["blocks"] == sim["blocks"] and lf_check["useful"] == sim["tokens_useful"]}
    print(f"[bench] b. packing simulation vs LlamaFactory's packed {RECIPE} dataset: "
          f"{check['simulated_blocks']} vs {check['llamafactory_blocks']} blocks — {'match' if check['match'] else 'MISMATCH'}", flush=True)
    measured = []
    if lf_tps is None:
        print("[bench] b. llamafactory-cli train with packing=false", flush=True)
        lf_tps = run_llamafactory(steps, tmp / "nopack", "packing=false")["tokens_per_s"]
        measured.append({"label": "packing=false", "tokens_per_s": lf_tps, "useful_fraction": tiny_nopack["useful_fraction"]})
    else:
        measured.append({"label": "packing=false (runs of a)", "tokens_per_s": lf_tps, "useful_fraction": tiny_nopack["useful_fraction"]})
    modes = [("packing=true", {"packing": True})] + ([] if no_neat else [("neat_packing=true", {"neat_packing": True})])
    for i, (label, extra) in enumerate(modes):
        print(f"[bench] b. llamafactory-cli train with {label}", flush=True)
        r = run_llamafactory(steps, tmp / f"pack{i}", label, **extra)
        measured.append({"label": label, "tokens_per_s": r["tokens_per_s"], "useful_fraction": tiny_packed["useful_fraction"],
                         "wall_s": r["wall_s"], "train_runtime_s": r["train_runtime_s"], "tokens": r["tokens"],
                         "peak_rss_gib": r["peak_rss_gib"]})
    for m in measured:
        m["useful_tokens_per_s"] = round(m["tokens_per_s"] * m["useful_fraction"], 1)
        m["useful_vs_no_packing"] = round(m["useful_tokens_per_s"] / (lf_tps * tiny_nopack["useful_fraction"]), 3)
        m["processed_vs_no_packing"] = round(m["tokens_per_s"] / lf_tps, 3)
    return {"recipes": table, "packing_check": check,
            "tiny_telecom": {"cutoff": tiny["cutoff_len"], "batch": tiny["per_device_train_batch_size"],
                             "no_packing": tiny_nopack, "packed": tiny_packed, "measured": measured}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per training run (default 20)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side in (a), alternating A B B A (default 2)")
    parser.add_argument("--parts", default="abc", help="which parts to (re)run, e.g. `c`; the others are kept from --out")
    parser.add_argument("--e2e", choices=["auto", "run", "reuse", "skip"], default="auto",
                        help="c: auto = reuse saves/tiny_full/telecom_r32/eval/report.json if present, else run the demo once")
    parser.add_argument("--rss-json", type=Path, help="c, with a reused report: peak RSS per stage from benchmarks/rss_watch.py")
    parser.add_argument("--no-neat", action="store_true", help="skip the measured neat_packing run in (b)")
    parser.add_argument("--out", type=Path, default=RESULTS / "train.json")
    args = parser.parse_args()

    started = time.perf_counter()
    previous = json.loads(args.out.read_text()) if args.out.is_file() and set(args.parts) != set("abc") else {}
    result: dict[str, Any] = {"benchmark": "train", **{k: previous[k] for k in ("overhead", "padding", "end_to_end") if k in previous}}
    info = {**machine(), "date": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    result["machine"] = info if "a" in args.parts or "machine" not in previous else previous["machine"]
    if "c" in args.parts and set(args.parts) != set("abc"):
        result.setdefault("machine", {})["e2e_date"] = info["date"]
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        if "a" in args.parts or "b" in args.parts:
            model = ensure_tiny()
        if "a" in args.parts:
            result["overhead"] = part_a(args.steps, args.repeats, model, tmp)
        if "b" in args.parts:
            lf_tps = result["overhead"]["llamafactory_tokens_per_s"] if "a" in args.parts else None
            result["padding"] = part_b(args.steps, args.no_neat, lf_tps, tmp)
        if "c" in args.parts:
            result["end_to_end"] = end_to_end(args.e2e, args.rss_json)

    if "overhead" in result:
        print_overhead(result["overhead"])
    if "padding" in result:
        print_padding(result["padding"])
    if "end_to_end" in result:
        print_e2e(result["end_to_end"])

    result.update(steps=result.get("overhead", {}).get("steps", args.steps), repeats=args.repeats,
                  bench_wall_s=round(time.perf_counter() - started, 1),
                  note="shared machine: absolute numbers are noisy; the side-by-side ratios are what matter")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    o, p, e = result.get("overhead", {}), result.get("padding", {}), result.get("end_to_end", {})
    summary = {"benchmark": "train", "date": result["machine"].get("date"), "nproc": result["machine"].get("nproc"),
               "steps": o.get("steps"), "lf_tokens_per_s": o.get("llamafactory_tokens_per_s"),
               "hand_tokens_per_s": o.get("baseline_tokens_per_s"), "overhead_ratio": o.get("ratio"),
               "useful_fraction": {r["recipe"]: {"no_packing": r["no_packing"], "packing": r["packing"]} for r in p.get("recipes", [])},
               "packing_useful_tokens_per_s_ratio": {m["label"]: m["useful_vs_no_packing"]
                                                     for m in p.get("tiny_telecom", {}).get("measured", [])[1:]},
               "e2e_total_s": e.get("total_s"), "e2e_peak_rss_gib": e.get("peak_rss_gib"), "e2e_stages": e.get("stages"),
               "results": rel(args.out)}
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()

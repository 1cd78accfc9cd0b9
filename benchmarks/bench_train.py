#!/usr/bin/env python
"""Training benchmarks on this CPU with the tiny model, measured side by side in one run. Not a test:

    .venv/bin/python benchmarks/bench_train.py [--steps 20] [--repeats 2] [--e2e auto|run|reuse|skip]

a. Framework overhead: `llamafactory-cli train recipes/telecom_r32.yaml` + its tiny-profile overrides
   (vslm.matrix.profile_overrides) + max_steps=N, no eval, no checkpoints, output to a temp dir — against a
   hand-written PEFT + transformers Trainer loop (benchmarks/hf_lora_baseline.py) on the same rows, chat
   format, label masking, LoRA r32/α64 on all linear projections, cutoff, batch, steps, lr, fp32 CPU.
   tokens/s = tokens fed to the model (Trainer's num_input_tokens_seen="all", padding included) ÷
   train_runtime; runs alternate A B B A… so drift on a shared machine hits both sides. Target ≥ 0.9×.
b. Padding waste: for every recipe's training datasets (rows tokenised by LlamaFactory's own pipeline with
   the real Qwen tokenizer), non-padding ÷ processed tokens at the recipe's batch and cutoff without packing
   (collator pads each micro-batch to its longest row, multiple of 8; mean over shuffles), with packing and
   with neat_packing (greedy knapsack into cutoff_len blocks per preprocessing shard, exactly as
   LlamaFactory packs — checked against its packed dataset in this run); and the measured tokens/s of short
   llamafactory runs with packing=true vs false (telecom, tiny profile).
c. End to end: wall time and peak RSS (process tree, sampled with psutil) of every stage of `vslm demo`.
   By default (auto) it reuses saves/tiny/telecom_r32/eval/report.json timings if present (no RSS then),
   otherwise it runs the demo once with VSLM_SAVES in a temp dir so nobody's saves/ are touched.
   Targets: ≤ 10 min and ≤ 6 GB on 2 cores.

Prints the tables, then one JSON line; writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, lf_dataset, machine, packed_blocks, packed_blocks_lf, padded_tokens, pt_blocks, \
    recipe_config, row_lengths  # noqa: E402

from vslm.matrix import format_overrides, get_recipe, load_matrix, load_recipes, profile_overrides  # noqa: E402

RECIPE = "telecom_r32"
TINY = "tiny-qwen2"
GIB = 1024 ** 3
DEMO_STAGES = {1: "tiny_model", 2: "train", 3: "merge", 4: "serve_and_eval", 5: "report"}


# ---------------------------------------------------------------- measured subprocesses (wall time, peak RSS)

class Measured:
    """Run a command, tee its output to a log, sample the RSS of its whole process tree every `interval` s.
    `stage_of(line)` may name the stage a line starts; peaks and wall times are then kept per stage."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None, interval: float = 0.25,
                 stage_of=None, echo: bool = False):
        self.cmd, self.log, self.env, self.interval, self.stage_of, self.echo = cmd, log, env, interval, stage_of, echo
        self.peak = 0
        self.stage: str | None = None
        self.stages: dict[str, dict[str, float]] = {}
        self._done = threading.Event()

    def _sample(self, proc) -> None:
        import psutil

        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            total = 0
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                procs = []
            for p in procs:
                try:
                    total += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            if self.stage:
                st = self.stages[self.stage]
                st["peak_rss"] = max(st["peak_rss"], total)
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
                name = self.stage_of(line) if self.stage_of else None
                if name:
                    now = time.perf_counter() - start
                    if self.stage:
                        self.stages[self.stage]["end_s"] = now
                    self.stage = name
                    self.stages[name] = {"start_s": now, "end_s": now, "peak_rss": 0}
            rc = proc.wait()
            self._done.set()
            sampler.join()
        wall = time.perf_counter() - start
        if self.stage:
            self.stages[self.stage]["end_s"] = wall
        return {"rc": rc, "wall_s": wall, "peak_rss": self.peak, "stages": self.stages}


def tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])


def ensure_tiny() -> Path:
    model = ROOT / "models" / TINY
    if not (model / "config.json").is_file():
        from vslm.tiny import build_tiny

        print(f"[bench] {model.relative_to(ROOT)} missing: building it (waits if someone else is building it)", flush=True)
        build_tiny(TINY)
    return model


# ---------------------------------------------------------------- a. framework overhead

def lf_overrides(steps: int, out: Path, **extra: Any) -> dict[str, Any]:
    recipe = get_recipe(RECIPE)
    over = profile_overrides(recipe, recipe.stage("train"), "tiny", load_matrix())
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
    from transformers import AutoTokenizer

    from hf_lora_baseline import encode_row, load_rows

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
                         "max_rows_per_block": packed["max_rows_per_block"], "preprocessing_workers": packed["workers"]})
    return rows


# ---------------------------------------------------------------- c. end to end

def demo_stage(line: str) -> str | None:
    m = re.match(r"==> \[(\d)/5\]", line.strip())
    return DEMO_STAGES.get(int(m.group(1))) if m else None


def end_to_end(mode: str, tmp: Path) -> dict[str, Any]:
    existing = ROOT / "saves" / "tiny" / RECIPE / "eval" / "report.json"
    if mode == "skip":
        return {"mode": "skipped"}
    if mode in ("auto", "reuse") and existing.is_file():
        report = json.loads(existing.read_text())
        timings = (report.get("context") or {}).get("timings_s") or {}
        return {"mode": "reused", "source": str(existing.relative_to(ROOT)), "timings_s": timings,
                "backend": (report.get("context") or {}).get("backend"),
                "stages": {k: {"wall_s": v, "peak_rss_gib": None} for k, v in timings.items() if k != "total"},
                "total_s": timings.get("total"), "peak_rss_gib": None,
                "note": "timings read from an existing report; RSS not measured (run with --e2e run)"}
    if mode == "reuse":
        return {"mode": "missing", "note": f"{existing.relative_to(ROOT)} not found"}
    saves = tmp / "demo-saves"
    log = tmp / "demo.log"
    print(f"[bench] c. running `vslm demo` once (VSLM_SAVES={saves}; log {log})", flush=True)
    res = Measured([str(Path(sys.executable).with_name("vslm")), "demo"], log, env={"VSLM_SAVES": str(saves)},
                   stage_of=demo_stage).run()
    if res["rc"] != 0:
        return {"mode": "ran", "rc": res["rc"], "error": tail(log, 40)}
    report = json.loads((saves / "tiny" / RECIPE / "eval" / "report.json").read_text())
    timings = (report.get("context") or {}).get("timings_s") or {}
    stages = {name: {"wall_s": round(s["end_s"] - s["start_s"], 1), "peak_rss_gib": round(s["peak_rss"] / GIB, 2)}
              for name, s in res["stages"].items()}
    return {"mode": "ran", "rc": 0, "timings_s": timings, "stages": stages, "total_s": round(res["wall_s"], 1),
            "peak_rss_gib": round(res["peak_rss"] / GIB, 2), "backend": (report.get("context") or {}).get("backend")}


# ---------------------------------------------------------------- main

def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per training run (default 20)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side in (a), alternating A B B A (default 2)")
    parser.add_argument("--e2e", choices=["auto", "run", "reuse", "skip"], default="auto",
                        help="c: auto = reuse saves/tiny/telecom_r32/eval/report.json if present, else run the demo once")
    parser.add_argument("--no-neat", action="store_true", help="skip the measured neat_packing run in (b)")
    parser.add_argument("--out", type=Path, default=RESULTS / "train.json")
    args = parser.parse_args()

    started = time.perf_counter()
    info = {**machine(), "date": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    model = ensure_tiny()
    tiny = load_matrix()["profiles"]["tiny"]
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)

        # a. framework overhead, alternating A B B A ...
        parity = tokenisation_parity(model)
        print(f"[bench] a. tokenisation parity: hand-written == LlamaFactory on {parity['identical']}/{parity['rows']} rows", flush=True)
        lf_runs, hf_runs = [], []
        order = []
        for i in range(args.repeats):
            order += ["lf", "hf"] if i % 2 == 0 else ["hf", "lf"]
        for i, side in enumerate(order):
            print(f"[bench] a. run {i + 1}/{len(order)}: {'llamafactory-cli train' if side == 'lf' else 'PEFT + Trainer'}", flush=True)
            if side == "lf":
                lf_runs.append(run_llamafactory(args.steps, tmp / f"lf{i}", "llamafactory-cli train"))
            else:
                hf_runs.append(run_baseline(args.steps, tmp / f"hf{i}", model))
        lf_tps = median([r["tokens_per_s"] for r in lf_runs])
        hf_tps = median([r["tokens_per_s"] for r in hf_runs])
        overhead = {"parity": parity, "llamafactory": lf_runs, "baseline": hf_runs, "llamafactory_tokens_per_s": lf_tps,
                    "baseline_tokens_per_s": hf_tps, "ratio": round(lf_tps / hf_tps, 3), "target": 0.9,
                    "steps": args.steps, "batch": tiny["per_device_train_batch_size"], "cutoff": tiny["cutoff_len"]}

        # b. padding waste: computed for every recipe, measured for telecom in the tiny profile
        print("[bench] b. padding waste per recipe (LlamaFactory tokenisation, real Qwen tokenizer)", flush=True)
        table = padding_table()
        recipe = get_recipe(RECIPE)
        cfg = recipe_config(recipe.stage("train").path)
        tiny_lengths = row_lengths(cfg, recipe["family"], cutoff_len=tiny["cutoff_len"])
        tiny_nopack = padded_tokens(tiny_lengths, tiny["per_device_train_batch_size"], seed=recipe["seed"])
        tiny_packed = packed_blocks(cfg, recipe["family"], cutoff_len=tiny["cutoff_len"], workers=tiny["preprocessing_num_workers"])
        lf_check = packed_blocks_lf(cfg, recipe["family"])
        sim = next(r for r in table if r["recipe"] == RECIPE)
        check = {"llamafactory_blocks": lf_check["blocks"], "simulated_blocks": sim["blocks"],
                 "llamafactory_useful": lf_check["useful"], "simulated_useful": sim["tokens_useful"],
                 "match": lf_check["blocks"] == sim["blocks"] and lf_check["useful"] == sim["tokens_useful"]}
        print(f"[bench] b. packing simulation vs LlamaFactory's packed {RECIPE} dataset: "
              f"{check['simulated_blocks']} vs {check['llamafactory_blocks']} blocks — {'match' if check['match'] else 'MISMATCH'}", flush=True)
        pack_runs = []
        modes = [("packing=true", {"packing": True})] + ([] if args.no_neat else [("neat_packing=true", {"neat_packing": True})])
        for i, (label, extra) in enumerate(modes):
            print(f"[bench] b. llamafactory-cli train with {label}", flush=True)
            pack_runs.append(run_llamafactory(args.steps, tmp / f"pack{i}", label, **extra))
        base = {"label": "packing=false (runs of a)", "tokens_per_s": lf_tps, "useful_fraction": tiny_nopack["useful_fraction"]}
        measured = [base] + [{"label": r["label"], "tokens_per_s": r["tokens_per_s"], "useful_fraction": tiny_packed["useful_fraction"],
                              "wall_s": r["wall_s"], "train_runtime_s": r["train_runtime_s"], "tokens": r["tokens"]} for r in pack_runs]
        for m in measured:
            m["useful_tokens_per_s"] = round(m["tokens_per_s"] * m["useful_fraction"], 1)
            m["useful_vs_no_packing"] = round(m["useful_tokens_per_s"] / (lf_tps * tiny_nopack["useful_fraction"]), 3)
            m["processed_vs_no_packing"] = round(m["tokens_per_s"] / lf_tps, 3)
        padding = {"recipes": table, "packing_check": check,
                   "tiny_telecom": {"cutoff": tiny["cutoff_len"], "batch": tiny["per_device_train_batch_size"],
                                    "no_packing": tiny_nopack, "packed": tiny_packed, "measured": measured}}

        # c. end to end
        e2e = end_to_end(args.e2e, tmp)

    # ---------------------------------------------------------------- print
    print(f"\n== a. framework overhead: {RECIPE}, tiny profile (models/{TINY}, fp32 CPU, batch {tiny['per_device_train_batch_size']}, "
          f"cutoff {tiny['cutoff_len']}, LoRA r32/α64 all linear), {args.steps} steps, runs in order {' '.join(order)}")
    print(f"{'run':32} {'steps':>5} {'tokens':>7} {'train s':>8} {'tokens/s':>9} {'wall s':>7} {'peak RSS':>9}")
    for r in [x for pair in zip(lf_runs, hf_runs) for x in pair]:
        print(f"{r['label']:32} {r['steps']:>5} {r['tokens']:>7} {r['train_runtime_s']:>8} {r['tokens_per_s']:>9} {r['wall_s']:>7} "
              f"{r['peak_rss_gib']:>7} G")
    print(f"median tokens/s: LlamaFactory {lf_tps}, hand-written {hf_tps} -> ratio {overhead['ratio']}x (target >= 0.9x); "
          f"tokenisation identical on {parity['identical']}/{parity['rows']} rows")

    print("\n== b. useful-token fraction (non-padding / processed) at each recipe's batch and cutoff")
    print(f"{'recipe':20} {'datasets':27} {'rows':>5} {'batch':>5} {'cutoff':>6} {'shipped':>13} {'no packing':>10} "
          f"{'packing':>8} {'neat':>7}  rows sharing a block (neat packing's guard)")
    for r in table:
        if r.get("pt"):
            pt = r["pt"]
            note = (f"pt concatenates per shard ({pt['workers']} workers): {pt['blocks']} blocks; {pt['dropped_tokens']} of "
                    f"{pt['corpus_tokens']} corpus tokens dropped as shard remainders")
            print(f"{r['recipe']:20} {r['datasets']:27} {r['rows']:>5} {r['batch']:>5} {r['cutoff']:>6} {'always':>13} {'-':>10} "
                  f"{pct(1.0):>8} {'-':>7}  {note}")
            continue
        guard = (f"{r['rows_sharing_a_block']}/{r['rows']} rows in {r['blocks_with_several_rows']} multi-row blocks "
                 f"(up to {r['max_rows_per_block']})")
        print(f"{r['recipe']:20} {r['datasets']:27} {r['rows']:>5} {r['batch']:>5} {r['cutoff']:>6} {r['as_shipped']:>13} "
              f"{pct(r['no_packing']):>10} {pct(r['packing']):>8} {pct(r['neat_packing']):>7}  {guard}")
    print("packing and neat_packing build the same blocks (same useful fraction); with plain packing every row in a "
          "multi-row block attends to its neighbours — neat_packing's block-diagonal mask is what keeps them independent.")
    tp = padding["tiny_telecom"]
    print(f"\nmeasured, {RECIPE} tiny profile (cutoff {tp['cutoff']}, batch {tp['batch']}): useful fraction no packing "
          f"{pct(tp['no_packing']['useful_fraction'])}, packed {pct(tp['packed']['useful_fraction'])} "
          f"({tp['packed']['rows_sharing_a_block']}/{tp['packed']['rows']} rows share a block)")
    print(f"{'run':28} {'tokens/s':>9} {'useful':>7} {'useful tok/s':>12} {'vs no packing':>13}")
    for m in measured:
        print(f"{m['label']:28} {m['tokens_per_s']:>9} {pct(m['useful_fraction']):>7} {m['useful_tokens_per_s']:>12} "
              f"{m['useful_vs_no_packing']:>12}x")

    print("\n== c. end to end: `vslm demo` (tiny model -> train -> merge -> serve+eval -> report)")
    if e2e.get("stages"):
        print(f"{'stage':16} {'wall s':>8} {'peak RSS (tree)':>16}")
        for name, s in e2e["stages"].items():
            rss = "-" if s["peak_rss_gib"] is None else f"{s['peak_rss_gib']} GiB"
            print(f"{name:16} {s['wall_s']:>8} {rss:>16}")
        total_rss = "-" if e2e.get("peak_rss_gib") is None else f"{e2e['peak_rss_gib']} GiB"
        print(f"{'total':16} {e2e.get('total_s'):>8} {total_rss:>16}   (targets: <= 600 s, <= 6 GB on 2 cores; "
              f"backend {e2e.get('backend')}; {e2e['mode']})")
    else:
        print(f"  {e2e}")

    result = {"benchmark": "train", "machine": info, "steps": args.steps, "repeats": args.repeats,
              "overhead": overhead, "padding": padding, "end_to_end": e2e,
              "bench_wall_s": round(time.perf_counter() - started, 1),
              "note": "shared machine: absolute numbers are noisy; the side-by-side ratios are what matter"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    summary = {"benchmark": "train", "date": info["date"], "nproc": info["nproc"], "steps": args.steps,
               "lf_tokens_per_s": lf_tps, "hand_tokens_per_s": hf_tps, "overhead_ratio": overhead["ratio"],
               "useful_fraction": {r["recipe"]: {"no_packing": r["no_packing"], "packing": r["packing"]} for r in table},
               "packing_useful_tokens_per_s_ratio": {m["label"]: m["useful_vs_no_packing"] for m in measured[1:]},
               "e2e_total_s": e2e.get("total_s"), "e2e_peak_rss_gib": e2e.get("peak_rss_gib"),
               "e2e_stages": e2e.get("stages"), "results": str(args.out.relative_to(ROOT)) if args.out.is_relative_to(ROOT) else str(args.out)}
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()

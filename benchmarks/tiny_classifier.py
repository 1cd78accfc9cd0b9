#!/usr/bin/env python
"""How far the tiny model classifies questions it never saw: `platform_classifier` fully fine-tuned in the tiny_full
profile on all 715 training rows for N epochs, then served by vLLM and asked every held-out classification row with
structured choice (`vslm demo --skip-train`). Not a test; one training run takes 5-15 minutes on 2 cores.

    .venv/bin/python benchmarks/tiny_classifier.py --epochs 10 30            # train and evaluate each
    .venv/bin/python benchmarks/tiny_classifier.py --reuse DIR [DIR ...]     # collect runs already made (their $VSLM_SAVES)

Writes benchmarks/results/tiny_classifier.json: per run the epochs, final training loss, and per task the accuracy,
macro-F1 and majority-class floor of the fine-tuned and base models. Target (issue 15): accuracy >= 0.8 and >= 2x
the majority-class floor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from _common import RESULTS, machine

from vslm.core.paths import ROOT
from vslm.eval.evaluate import load_eval_rows
from vslm.recipes.matrix import get_recipe
from vslm.recipes.resolve import DEMO_PROFILE, resolve

RECIPE = "platform_classifier"


def train_and_evaluate(saves: Path, epochs: int) -> None:
    env = {**os.environ, "VSLM_SAVES": str(saves)}
    vslm = [sys.executable, "-m", "vslm"]
    for cmd in ([*vslm, "train", RECIPE, "--profile", DEMO_PROFILE, "max_samples=100000", f"num_train_epochs={epochs}",
                 "per_device_train_batch_size=8"], [*vslm, "demo", "--recipe", RECIPE, "--skip-train"]):
        print("$ " + " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def collect(saves: Path) -> dict:
    os.environ["VSLM_SAVES"] = str(saves)  # where resolve() finds the run
    plan = resolve(get_recipe(RECIPE), DEMO_PROFILE)
    record = json.loads((plan.trained_dir / "run_record.json").read_text(encoding="utf-8"))
    state = json.loads((plan.trained_dir / "trainer_state.json").read_text(encoding="utf-8"))
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    report = json.loads(plan.report_json.read_text(encoding="utf-8"))
    rows = [r for r in load_eval_rows(get_recipe(RECIPE)["eval_set"]) if r.get("task") == "classification"]
    tasks = {}
    for task, rep in report["results"]["fine-tuned"]["summary"]["classification"].items():
        labels = task.split(" / ")
        gold = Counter(r["output"] for r in rows if r["output"] in labels and set(r["labels"]) == set(labels))
        base = report["results"]["base"]["summary"]["classification"][task]
        tasks[task] = {"rows": sum(gold.values()), "majority_floor": round(max(gold.values()) / sum(gold.values()), 3),
                       "fine_tuned_accuracy": round(rep["accuracy"], 3), "fine_tuned_macro_f1": round(rep["macro_f1"], 3),
                       "base_accuracy": round(base["accuracy"], 3), "confusion": rep["confusion"]}
    n = sum(t["rows"] for t in tasks.values())
    return {"saves": str(saves), "epochs": record["effective_config"]["num_train_epochs"], "steps": state["global_step"],
            "final_training_loss": losses[-1] if losses else None, "tasks": tasks,
            "accuracy_all_classification_rows": round(sum(t["fine_tuned_accuracy"] * t["rows"] for t in tasks.values()) / n, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, nargs="*", default=[])
    ap.add_argument("--reuse", type=Path, nargs="*", default=[], help="$VSLM_SAVES folders of runs already made")
    ap.add_argument("--work", type=Path, default=ROOT / "saves" / "bench-classifier")
    ap.add_argument("--out", type=Path, default=RESULTS / "tiny_classifier.json")
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    folders = list(args.reuse)
    for epochs in args.epochs:
        folders.append(args.work / f"epochs{epochs}")
        train_and_evaluate(folders[-1], epochs)
    runs = sorted((collect(f) for f in folders), key=lambda r: r["epochs"])
    for r in runs:
        per_task = "; ".join(f"{task}: {t['fine_tuned_accuracy']} (base {t['base_accuracy']}, majority {t['majority_floor']})"
                             for task, t in r["tasks"].items())
        print(f"{r['epochs']:>4} epochs, {r['steps']} steps, final loss {r['final_training_loss']}: "
              f"accuracy {r['accuracy_all_classification_rows']} — {per_task}")
    args.out.write_text(json.dumps({"started": started, "machine": machine(), "recipe": RECIPE, "profile": DEMO_PROFILE,
                                    "runs": runs}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

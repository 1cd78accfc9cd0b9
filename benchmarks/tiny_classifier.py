#!/usr/bin/env python
"""How far the tiny model classifies questions it never saw: `platform_classifier` fully fine-tuned in the tiny_full
profile on all 715 training rows for N epochs, then served by vLLM and asked every held-out classification row with
structured choice (`vslm demo --skip-train`). Not a test; one training run takes 5-15 minutes on 2 cores.

    .venv/bin/python benchmarks/tiny_classifier.py --epochs 10 30            # train and evaluate each
    .venv/bin/python benchmarks/tiny_classifier.py --reuse DIR [DIR ...]     # collect runs already made (their $VSLM_SAVES)
    .venv/bin/python benchmarks/tiny_classifier.py --warm-up "neat_packing=true bf16=true" --epochs 10   # on another base
    .venv/bin/python benchmarks/tiny_classifier.py --size "num_hidden_layers=8" --epochs 10   # on a bigger network

Writes benchmarks/results/tiny_classifier.json: per run the base model (models/tiny-qwen3 or a --warm-up/--size variant),
the epochs, the training data's digest, final training loss, and per task the accuracy, macro-F1 and majority-class
floor of the fine-tuned and base models. Target (issue 15): accuracy >= 0.8 and >= 2x the majority-class floor.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from _common import (
    base_model_label,
    base_model_of,
    main_job_parser,
    read_main_job,
    train_then_evaluate,
    warm_up_base,
    write_main_job_runs,
)

from vslm.eval.evaluate import load_eval_rows
from vslm.recipes.matrix import get_recipe

RECIPE = "platform_classifier"


def collect(saves: Path) -> dict:
    run = read_main_job(saves, RECIPE)
    report = run.report
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
    return {"saves": str(saves), "base_model": base_model_of(run),
            "epochs": run.record["effective_config"]["num_train_epochs"], "steps": run.state["global_step"],
            "training_data_sha256": {name: d["sha256"][:12] for name, d in run.record["datasets"].items()},
            "final_training_loss": run.final_training_loss, "tasks": tasks,
            "accuracy_all_classification_rows": round(sum(t["fine_tuned_accuracy"] * t["rows"] for t in tasks.values()) / n, 3)}


def main() -> None:
    ap = main_job_parser(__doc__, "tiny_classifier")
    ap.add_argument("--epochs", type=int, nargs="*", default=[])
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    folders = list(args.reuse)
    base = warm_up_base(args, RECIPE)
    for epochs in args.epochs:
        folders.append(args.work / (f"epochs{epochs}" + (f"-{Path(base[0]).name}" if base else "")))
        train_then_evaluate(folders[-1], RECIPE, [*base, "max_samples=100000", f"num_train_epochs={epochs}",
                                                  "per_device_train_batch_size=8"])
    runs = [collect(f) for f in folders]
    for r in runs:
        per_task = "; ".join(f"{task}: {t['fine_tuned_accuracy']} (base {t['base_accuracy']}, majority {t['majority_floor']})"
                             for task, t in r["tasks"].items())
        data = ", ".join(f"{name} {digest}" for name, digest in r["training_data_sha256"].items())
        print(f"{base_model_label(r['base_model'])}, {r['epochs']:>4} epochs ({data}), {r['steps']} steps, final loss {r['final_training_loss']}: "
              f"accuracy {r['accuracy_all_classification_rows']} — {per_task}")
    write_main_job_runs(args.out, started, RECIPE, runs)


if __name__ == "__main__":
    main()

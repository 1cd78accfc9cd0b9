#!/usr/bin/env python
"""What the training rows alone allow on the questions the tiny model misses: answer each held-out question with the
training row whose question is most like it — the report's lookup floor (`vslm.eval.evaluate.nearest_training_answers`:
BM25 over character uni- and bigrams, the RAG index of vslm.eval.rag) — scored by the project's own metrics. No model,
no training; runs in seconds.

    .venv/bin/python benchmarks/lookup_baseline.py

- telecom_r32, reworded questions: the answer of the nearest training question, key-fact recall as the report scores
  it. Once over what the main job trains and asks (the first `max_samples` rows of the tiny_full profile and the
  reworded rows about them), once over every training row and every reworded row.
- platform_classifier, held-out classification rows: the label of the nearest training row of the same task.

Writes benchmarks/results/lookup_baseline.json, next to the tiny model's own scores on the same rows (from
tiny_full_variants.json and tiny_classifier.json) and the report's floors. Issue 15's targets are reworded recall >= 0.3
and classifier accuracy >= 0.8: if a lookup of the training rows reaches them, the data allows them and what falls
short is the model.
"""

from __future__ import annotations

import datetime as dt
import json

from _common import RESULTS, machine

from vslm.eval.evaluate import (
    about_trained_facts,
    fixed_evaluation,
    floor_results,
    load_eval_rows,
    nearest_training_answers,
    training_rows,
)
from vslm.eval.metrics import measure_of
from vslm.recipes.matrix import get_recipe
from vslm.recipes.resolve import DEMO_PROFILE, resolve


def telecom(max_samples: int | None) -> dict:
    recipe = get_recipe("telecom_r32")
    training = training_rows(recipe["datasets"], max_samples)
    rows = [r for r in about_trained_facts(load_eval_rows(recipe["eval_set"]), recipe["datasets"], max_samples)
            if measure_of(r) == "reworded"]
    floors = floor_results(rows, training)
    lookup = floors.pop("lookup")
    return {"training_rows": len(training), "reworded_rows": len(rows),
            "lookup_key_fact_recall": round(lookup["summary"]["overall"]["key_fact_recall"], 3),
            "lookup_rows_with_every_key_fact": sum(s["key_fact_recall"] == 1 for s in lookup["scores"].values()),
            "floors_key_fact_recall": {name: round(f["summary"]["overall"]["key_fact_recall"], 3) for name, f in floors.items()}}


def platform() -> dict:
    recipe = get_recipe("platform_classifier")
    training = training_rows(recipe["datasets"])
    rows = [r for r in load_eval_rows(recipe["eval_set"]) if r.get("task") == "classification"]
    tasks = {}
    for instruction in dict.fromkeys(r["instruction"] for r in rows):
        asked = [r for r in rows if r["instruction"] == instruction]
        evaluation = fixed_evaluation("nearest training label", asked, nearest_training_answers(asked, training))
        labels = asked[0]["labels"]
        majority = max(sum(r["output"] == label for r in asked) for label in labels) / len(asked)
        tasks[" / ".join(labels)] = {"rows": len(asked), "lookup_accuracy": round(evaluation["summary"]["overall"]["accuracy"], 3),
                                     "majority_floor": round(majority, 3)}
    n = sum(t["rows"] for t in tasks.values())
    return {"training_rows": len(training), "tasks": tasks,
            "lookup_accuracy_all_rows": round(sum(t["lookup_accuracy"] * t["rows"] for t in tasks.values()) / n, 3)}


def tiny_model_scores() -> dict:
    """The tiny model's scores on the same rows, as its benchmarks recorded them (the shipped main-job run; every
    classifier run)."""
    variants = json.loads((RESULTS / "tiny_full_variants.json").read_text(encoding="utf-8"))
    shipped = next(run for run in variants["runs"] if not run["overrides"])
    classifier = json.loads((RESULTS / "tiny_classifier.json").read_text(encoding="utf-8"))
    return {"telecom_reworded_key_fact_recall": shipped["reworded_key_fact_recall"],
            "platform_accuracy_all_rows": [run["accuracy_all_classification_rows"] for run in classifier["runs"]]}


def main() -> None:
    max_samples = resolve(get_recipe("telecom_r32"), DEMO_PROFILE).stage("train").config.get("max_samples")
    out = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "method": "BM25 over character uni- and bigrams (vslm.eval.rag.Index), top 1",
           "telecom_main_job": telecom(max_samples), "telecom_all_rows": telecom(None), "platform": platform(),
           "tiny_model": tiny_model_scores()}
    for name in ("telecom_main_job", "telecom_all_rows"):
        t = out[name]
        print(f"{name}: {t['training_rows']} training rows, {t['reworded_rows']} reworded questions: lookup recall "
              f"{t['lookup_key_fact_recall']} ({t['lookup_rows_with_every_key_fact']} with every key fact), floors {t['floors_key_fact_recall']}")
    p = out["platform"]
    print(f"platform: lookup accuracy {p['lookup_accuracy_all_rows']} — "
          + "; ".join(f"{task}: {t['lookup_accuracy']} (majority {t['majority_floor']})" for task, t in p["tasks"].items()))
    print(f"tiny model on the same rows: reworded recall {out['tiny_model']['telecom_reworded_key_fact_recall']}, "
          f"classifier accuracy {out['tiny_model']['platform_accuracy_all_rows']}")
    path = RESULTS / "lookup_baseline.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""How fast can the tiny model take in taught facts? A sweep over training settings, measured, not a test:

    .venv/bin/python benchmarks/sweep_tiny.py [--rows 128] [--steps 240] [--only NAME ...]

Each variant trains `telecom_r32` in the tiny profile (`vslm train --profile tiny` + the variant's key=value
overrides, batch 8) on the first `--rows` training rows (LlamaFactory's max_samples) for `--steps` steps, then answers,
greedily and in-process, every taught question among those rows (the training questions behind `telecom_eval`'s
reworded rows) and scores key-fact recall with the project's metric. An injection measurement on the rows the
model saw — never a generalisation score. Writes benchmarks/results/tiny_sweep.json and tiny_sweep.png (loss curves).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, machine

from vslm.eval.client import prompt_of
from vslm.eval.evaluate import load_eval_rows, taught_rows
from vslm.recipes.matrix import get_recipe
from vslm.eval.metrics import key_fact_recall

RECIPE = "telecom_r32"
VARIANTS: dict[str, list[str]] = {
    "lora r32 (as shipped), lr 5e-3": ["learning_rate=5e-3"],
    "lora r32 + trained embeddings, lr 5e-3": ["learning_rate=5e-3", "additional_target=embed_tokens"],
    "full fine-tune, lr 1e-3": ["learning_rate=1e-3", "finetuning_type=full"],
    "full fine-tune, lr 3e-3": ["learning_rate=3e-3", "finetuning_type=full"],
}


def taught_among(rows: int) -> list[dict]:
    """The taught questions whose training row is among the first `rows` rows of the recipe's training file."""
    recipe = get_recipe(RECIPE)
    first = [json.loads(line) for line in (ROOT / "datasets/telecom/telecom_train.jsonl").read_text(encoding="utf-8").splitlines()[:rows]]
    seen = {prompt_of(r).strip() for r in first}
    taught = taught_rows(load_eval_rows(recipe["eval_set"]), recipe["datasets"], recipe["eval_set"], sample=10**6)
    return [t for t in taught if prompt_of(t).strip() in seen]


def greedy_recall(model_dir: Path, adapter: Path | None, rows: list[dict], system: str, max_new_tokens: int = 96) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.eval()
    recalls, answers = [], {}
    for row in rows:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt_of(row)}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        answers[row["id"]] = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        recalls.append(key_fact_recall(answers[row["id"]], row["key_facts"]))
    return {"taught_recall": round(sum(recalls) / len(recalls), 3), "n": len(recalls), "answers": answers}


def run_variant(name: str, overrides: list[str], rows: int, steps: int, work: Path) -> dict:
    out = work / name.replace(" ", "_").replace(",", "")
    cmd = [sys.executable, "-m", "vslm", "train", RECIPE, "--profile", "tiny", f"max_samples={rows}", f"max_steps={steps}",
           "per_device_train_batch_size=8", "save_steps=1000000", "logging_steps=10", f"output_dir={out}", *overrides]
    t0 = time.monotonic()
    with out.with_suffix(".log").open("w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"[sweep] {name} failed (exit {rc}); see {out.with_suffix('.log')}")
    wall = time.monotonic() - t0
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    losses = [(e["current_steps"], e["loss"]) for e in log if "loss" in e]
    config = json.loads((out / "adapter_config.json").read_text()) if (out / "adapter_config.json").is_file() else None
    base = Path(config["base_model_name_or_path"]) if config else out
    recipe = get_recipe(RECIPE)
    probe = greedy_recall(ROOT / base, out if config else None, taught_among(rows), recipe["system"])
    return {"variant": name, "overrides": overrides, "train_wall_s": round(wall, 1), "losses": losses,
            "last_losses_mean": round(sum(v for _, v in losses[-3:]) / len(losses[-3:]), 3), **probe}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        steps, losses = zip(*r["losses"])
        ax.plot(steps, losses, label=f"{r['variant']} (taught recall {r['taught_recall']})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("tiny telecom_r32: training loss and taught-question recall")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--only", nargs="*", choices=list(VARIANTS), help="run these variants only")
    ap.add_argument("--out", type=lambda p: Path(p).resolve(), default=RESULTS / "tiny_sweep.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results = []
    with tempfile.TemporaryDirectory(prefix="sweep-tiny-") as tmp:
        for name in args.only or VARIANTS:
            print(f"[sweep] {name}: training {args.steps} steps on {args.rows} rows", flush=True)
            results.append(run_variant(name, VARIANTS[name], args.rows, args.steps, Path(tmp)))
            r = results[-1]
            print(f"[sweep] {name}: loss {round(r['losses'][0][1], 2)} -> {r['last_losses_mean']}, taught recall {r['taught_recall']} "
                  f"on {r['n']} questions, {r['train_wall_s']} s", flush=True)
    args.out.write_text(json.dumps({"started": started, "machine": machine(), "rows": args.rows, "steps": args.steps,
                                    "results": results}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    plot(results, args.out.with_suffix(".png"))
    print(f"\n{'variant':40} {'loss':>15} {'taught recall':>13} {'train s':>8}")
    for r in results:
        print(f"{r['variant']:40} {round(r['losses'][0][1], 2):>5} -> {r['last_losses_mean']:<6} {r['taught_recall']:>13} {r['train_wall_s']:>8}")
    print(f"wrote {args.out.relative_to(ROOT)} and {args.out.with_suffix('.png').relative_to(ROOT)}")


if __name__ == "__main__":
    main()

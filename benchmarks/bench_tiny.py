#!/usr/bin/env python
"""The tiny model before and after the vocabulary cut, side by side in one run. Not a test:

    .venv/bin/python benchmarks/bench_tiny.py [--steps 30] [--repeats 2]

Both networks are initialised at random (speed does not depend on the weights) in a temporary folder:
  before — the old tiny spec: Qwen2, 2 layers x 64 hidden, the full 151,936-row Qwen vocabulary;
  after  — vslm.models.tiny.SPECS["tiny-qwen2"] with the Qwen tokenizer cut to this repository's text.
Each trains `recipes/telecom_r32.yaml` with its tiny-profile overrides + max_steps=N through llamafactory-cli
(bench_train.run_llamafactory: tokens fed to the model ÷ train_runtime, peak RSS of the process tree); runs
alternate A B B A… so drift on a shared machine hits both sides. Target: after ≥ 5× before.
Prints a table and one JSON line; writes benchmarks/results/tiny.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from pathlib import Path


from _common import RESULTS, machine  # noqa: E402
from bench_train import run_llamafactory  # noqa: E402

from vslm.models.tiny import SPECS, tiny_tokenizer  # noqa: E402
from vslm.models.tokenizer import build_qwen_tokenizer  # noqa: E402

BEFORE = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
              max_position_embeddings=4096, rope_theta=1_000_000.0)


def random_model(out: Path, tokenizer, spec: dict) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    vocab = 151936 if len(tokenizer) > 100_000 else -(-len(tokenizer) // 64) * 64
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, tie_word_embeddings=True, bos_token_id=end, pad_token_id=end,
                                         eos_token_id=tokenizer.eos_token_id, **spec))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "tiny.json")
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench-tiny-") as tmp:
        tmp = Path(tmp)
        models = {"before": random_model(tmp / "before", build_qwen_tokenizer("qwen2"), BEFORE),
                  "after": random_model(tmp / "after", tiny_tokenizer("tiny-qwen2"), SPECS["tiny-qwen2"]["config"])}
        order = [name for i in range(args.repeats) for name in (("before", "after") if i % 2 == 0 else ("after", "before"))]
        runs = []
        for i, name in enumerate(order):
            print(f"[bench] run {i + 1}/{len(order)}: {name}", flush=True)
            run = run_llamafactory(args.steps, tmp / f"run{i}-{name}", name, model_name_or_path=str(models[name]))
            runs.append({**run, "variant": name})
    best = {name: max(r["tokens_per_s"] for r in runs if r["variant"] == name) for name in ("before", "after")}
    peak = {name: max(r["peak_rss_gib"] for r in runs if r["variant"] == name) for name in ("before", "after")}
    print(f"\n{'variant':8} {'steps':>5} {'tokens':>7} {'runtime s':>9} {'tokens/s':>9} {'peak RSS GiB':>12}")
    for r in runs:
        print(f"{r['variant']:8} {r['steps']:>5} {r['tokens']:>7} {r['train_runtime_s']:>9} {r['tokens_per_s']:>9} {r['peak_rss_gib']:>12}")
    ratio = round(best["after"] / best["before"], 2)
    print(f"\nafter / before tokens/s (best of {args.repeats} each): {ratio}x  (target >= 5x); peak RSS {peak}")
    result = {"started": started, "machine": machine(), "steps": args.steps, "runs": runs, "best_tokens_per_s": best,
              "ratio": ratio, "peak_rss_gib": peak, "before_spec": BEFORE, "after_spec": SPECS["tiny-qwen2"]["config"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"ratio": ratio, "best_tokens_per_s": best}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The tiny model before and after the vocabulary cut, side by side in one run. Not a test:

    .venv/bin/python benchmarks/bench_tiny.py [--steps 30] [--repeats 2]

Both networks are initialised at random (speed does not depend on the weights) in a temporary folder:
  before — the old tiny spec: Qwen2, 2 layers x 64 hidden, the full 151,936-row Qwen vocabulary;
  after  — vslm.models.tiny.SPECS["tiny-qwen2"] with the Qwen tokenizer cut to this repository's text.
  after, 2 layers — the same with half the layers: how much of the cost the transformer layers are, beside the
  output layer (vocabulary × hidden multiply-adds per token), which every variant pays.
Each trains `recipes/telecom_r32.yaml` with its tiny-profile overrides + max_steps=N through llamafactory-cli
(bench_train.run_llamafactory: tokens fed to the model ÷ train_runtime, peak RSS of the process tree); runs
alternate A B … B A so drift on a shared machine hits every side. `--full` trains every weight, as the main job's
tiny_full profile does, instead of the recipe's LoRA; on a CPU with native bf16 it adds "after, bf16" (bf16 autocast,
as vslm.recipes.resolve.bf16_on_native_cpu trains tiny_full there), "after, packed, sdpa" (that precision plus
tiny_full's neat_packing, SDPA attention) and "after, as tiny_full" (the same with tiny_full's attention: the main
job's training). Tokens/s counts every token fed to the model, padding included; useful tokens/s counts the dataset's
own tokens: tokens/s × the non-padding share of the batches at the profile's batch and cutoff, packed or not
(bench_train.tiny_profile_padding; part b there checks the packing against LlamaFactory's packed dataset). Target (issue 15): the tiny profile trains ≥ 5× the old one's tokens/s.
Prints a table and one JSON line; writes benchmarks/results/tiny.json (tiny_full.json with --full).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from pathlib import Path

from _common import RESULTS, machine
from bench_train import run_llamafactory, tiny_profile_padding

from vslm.models.tiny import SPECS, tiny_tokenizer
from vslm.models.tokenizer import build_qwen_tokenizer
from vslm.recipes.matrix import load_matrix
from vslm.recipes.resolve import native_cpu_bf16

BEFORE = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
              max_position_embeddings=4096, rope_theta=1_000_000.0)


AFTER = SPECS["tiny-qwen2"]["config"]


def vocab_rows(tokenizer) -> int:
    return 151936 if len(tokenizer) > 100_000 else -(-len(tokenizer) // 64) * 64


def output_layer_share(tokenizer, spec: dict) -> float:
    """The output layer's share of a token's forward multiply-adds (vocabulary × hidden against the layers' matmuls)."""
    hidden, inter, layers = spec["hidden_size"], spec["intermediate_size"], spec["num_hidden_layers"]
    kv = hidden // spec["num_attention_heads"] * spec["num_key_value_heads"]
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter
    output = vocab_rows(tokenizer) * hidden
    return output / (output + layers * per_layer)


def paired_ratios(runs: list[dict], names: list[str], key: str) -> dict[str, list[float]]:
    """Each variant's `key` ÷ the "before" run of the same round (one pass A B C … over every variant), per round:
    the spread a shared machine's drift leaves, next to the best-of ratio."""
    rounds = [runs[i:i + len(names)] for i in range(0, len(runs), len(names))]
    out = {}
    for name in names[1:]:
        out[name] = [round(next(r[key] for r in chunk if r["variant"] == name) /
                           next(r[key] for r in chunk if r["variant"] == "before"), 2) for chunk in rounds]
    return out


def random_model(out: Path, tokenizer, spec: dict) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    vocab = vocab_rows(tokenizer)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, tie_word_embeddings=True, bos_token_id=end, pad_token_id=end,
                                         eos_token_id=tokenizer.eos_token_id, **spec))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="full fine-tune (the tiny_full profile's method) instead of LoRA")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/tiny.json (tiny_full.json with --full)")
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench-tiny-") as tmp:
        tmp = Path(tmp)
        cut = tiny_tokenizer("tiny-qwen2")
        specs = {"before": (build_qwen_tokenizer("qwen2"), BEFORE), "after": (cut, AFTER),
                 "after, 2 layers": (cut, {**AFTER, "num_hidden_layers": 2})}
        models = {name: random_model(tmp / f"model{i}", tokenizer, spec) for i, (name, (tokenizer, spec)) in enumerate(specs.items())}
        settings = {name: {} for name in specs}
        full = load_matrix()["profiles"]["tiny_full"]
        if args.full:
            bf16 = {"bf16": True} if native_cpu_bf16() else {}  # what bf16_on_native_cpu turns on for tiny_full here
            if bf16:
                specs["after, bf16"], models["after, bf16"], settings["after, bf16"] = specs["after"], models["after"], bf16
            packed = {**bf16, "neat_packing": full["neat_packing"]}
            for name, attention in (("after, packed, sdpa", {"flash_attn": "sdpa"}), ("after, as tiny_full", {"flash_attn": full["flash_attn"]})):
                specs[name], models[name], settings[name] = specs["after"], models["after"], {**packed, **attention}
        names = list(models)
        order = [name for i in range(args.repeats) for name in (names if i % 2 == 0 else names[::-1])]
        method = {key: full[key] for key in ("finetuning_type", "learning_rate")} if args.full else {}
        share = dict(zip((False, True), (part["useful_fraction"] for part in tiny_profile_padding())))
        runs = []
        for i, name in enumerate(order):
            print(f"[bench] run {i + 1}/{len(order)}: {name}", flush=True)
            run = run_llamafactory(args.steps, tmp / f"run{i}", name, model_name_or_path=str(models[name]), **method, **settings[name])
            useful = share[bool(settings[name].get("neat_packing"))]
            runs.append({**run, "variant": name, "output_layer_share": output_layer_share(*specs[name]),
                         "useful_share": round(useful, 4), "useful_tokens_per_s": round(run["tokens_per_s"] * useful, 1)})
    def best_of(key: str) -> dict[str, float]:
        return {name: max(r[key] for r in runs if r["variant"] == name) for name in names}

    best, best_useful, peak = best_of("tokens_per_s"), best_of("useful_tokens_per_s"), best_of("peak_rss_gib")
    print(f"\n{'variant':20} {'steps':>5} {'tokens':>7} {'runtime s':>9} {'tokens/s':>9} {'useful':>7} {'useful tok/s':>12} "
          f"{'peak RSS GiB':>12} {'output layer':>12}")
    for r in runs:
        print(f"{r['variant']:20} {r['steps']:>5} {r['tokens']:>7} {r['train_runtime_s']:>9} {r['tokens_per_s']:>9} "
              f"{r['useful_share']:>7.1%} {r['useful_tokens_per_s']:>12} {r['peak_rss_gib']:>12} {r['output_layer_share']:>12.0%}")
    ratios, useful_ratios = ({name: round(b[name] / b["before"], 2) for name in names[1:]} for b in (best, best_useful))
    per_round = {key: paired_ratios(runs, names, key) for key in ("tokens_per_s", "useful_tokens_per_s")}
    ratio = ratios["after"]
    print(f"\n{'full fine-tune' if args.full else 'LoRA'}, best of {args.repeats} each ÷ before — tokens/s: {ratios}; "
          f"useful tokens/s: {useful_ratios} (target >= 5x); peak RSS {peak}")
    for name in names[1:]:
        print(f"  {name:20} ÷ before, round by round: tokens/s {per_round['tokens_per_s'][name]}, "
              f"useful {per_round['useful_tokens_per_s'][name]}")
    result = {"started": started, "machine": machine(), "steps": args.steps, "method": "full" if args.full else "lora",
              "runs": runs, "best_tokens_per_s": best, "best_useful_tokens_per_s": best_useful, "ratio": ratio,
              "ratios": ratios, "useful_ratios": useful_ratios, "ratios_per_round": per_round, "useful_share": {"unpacked": round(share[False], 4),
                                                                                  "packed": round(share[True], 4)},
              "peak_rss_gib": peak, "specs": {name: spec for name, (_, spec) in specs.items()}}
    out = args.out or RESULTS / ("tiny_full.json" if args.full else "tiny.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"ratios": ratios, "useful_ratios": useful_ratios, "best_tokens_per_s": best}))


if __name__ == "__main__":
    main()

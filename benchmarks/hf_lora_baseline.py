#!/usr/bin/env python
"""The hand-written baseline of benchmarks/bench_train.py: LoRA SFT with PEFT + transformers' Trainer, no
LlamaFactory — the way the seed scripts trained. Not a test and not part of `vslm`.

Same data and maths as the LlamaFactory recipe: alpaca rows (history + instruction + "\\n" + input) rendered in
the Qwen chat format with the recipe's system prompt, each turn encoded as (prompt ids, answer ids) and the
prompt masked with -100, the same truncation rule (LlamaFactory's infer_seqlen, restated below), LoRA on every
linear projection, padding to the batch's longest row (multiple of 8), the Trainer's AdamW, cosine schedule.

    .venv/bin/python benchmarks/hf_lora_baseline.py --model models/tiny-qwen2 --data datasets/telecom/telecom_train.jsonl \\
        --system "你是一名中国移动的专业客服。" --cutoff 256 --batch 8 --steps 30 --lr 3e-3 --rank 32 --alpha 64 --out /tmp/hf

Prints one JSON line: train_runtime, num_input_tokens_seen (all tokens fed to the model, padding included),
tokens_per_s, steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

IGNORE = -100
USER = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
ASSISTANT = "{}<|im_end|>\n"
SYSTEM = "<|im_start|>system\n{}<|im_end|>\n"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def seq_budget(source_len: int, target_len: int, budget: int) -> tuple[int, int]:
    """How much of a (prompt, answer) pair fits in `budget` tokens: keep the answer unless it is over half the
    budget, then keep the prompt if it is under half, else split proportionally (LlamaFactory's rule)."""
    if target_len * 2 < budget:
        max_target = budget
    elif source_len * 2 < budget:
        max_target = budget - source_len
    else:
        max_target = int(budget * (target_len / (source_len + target_len)))
    new_target = min(max_target, target_len)
    new_source = min(max(budget - new_target, 0), source_len)
    return new_source, new_target


def encode_row(tok, row: dict, system: str, cutoff: int) -> dict[str, list[int]]:
    turns = [(q, a) for q, a in (row.get("history") or [])]
    query = "\n".join(x for x in (row.get("instruction"), row.get("input")) if x)
    turns.append((query, row["output"]))
    input_ids: list[int] = []
    labels: list[int] = []
    for i, (question, answer) in enumerate(turns):
        if len(input_ids) >= cutoff:
            break
        source = (tok.encode(SYSTEM.format(system), add_special_tokens=False) if i == 0 else []) + tok.encode(
            USER.format(question), add_special_tokens=False)
        target = tok.encode(ASSISTANT.format(answer), add_special_tokens=False)
        s_len, t_len = seq_budget(len(source), len(target), cutoff - len(input_ids))
        input_ids += source[:s_len] + target[:t_len]
        labels += [IGNORE] * s_len + target[:t_len]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--system", required=True)
    parser.add_argument("--cutoff", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--alpha", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.05)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from datasets import Dataset

    set_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.model)
    rows = load_rows(args.data)
    dataset = Dataset.from_list([encode_row(tok, r, args.system, args.cutoff) for r in rows])
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout,
                                             target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    training_args = TrainingArguments(
        output_dir=str(args.out), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        learning_rate=args.lr, max_steps=args.steps, lr_scheduler_type="cosine", warmup_steps=args.warmup_ratio,
        weight_decay=0.0, seed=args.seed, use_cpu=True, bf16=False, logging_steps=5, save_strategy="no",
        report_to="none", dataloader_num_workers=0, include_num_input_tokens_seen="all", disable_tqdm=True)
    collator = DataCollatorForSeq2Seq(tok, pad_to_multiple_of=8, label_pad_token_id=IGNORE)
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator)
    result = trainer.train()
    tokens = trainer.state.num_input_tokens_seen
    runtime = result.metrics["train_runtime"]
    out = {"train_runtime": runtime, "num_input_tokens_seen": tokens, "tokens_per_s": tokens / runtime,
           "steps": trainer.state.global_step, "train_loss": result.metrics.get("train_loss"),
           "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "wall_s": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baseline_results.json").write_text(json.dumps(out))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

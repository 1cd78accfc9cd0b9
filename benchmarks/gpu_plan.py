#!/usr/bin/env python
"""GPU plan (an estimate, not a measurement): memory and time per epoch of every recipe in
templates/matrix.yaml on one 24 GB and one 80 GB GPU. Not a test:

    .venv/bin/python benchmarks/gpu_plan.py [--mfu 0.35]

Inputs: the published Qwen architectures (below), the recipe's LoRA rank/targets, batch, cutoff, epochs and
switches, and the recipe's datasets tokenised by LlamaFactory's own pipeline with the real Qwen tokenizer
(so token counts are exact: system prompt, chat markup, padding to each micro-batch's longest row or packing).

Memory (bytes; bf16 = 2, tokens = batch x cutoff, the worst case micro-batch):
  weights        2 N                                  (bf16, frozen; Qwen ties lm_head to the embedding)
  LoRA           16 T                                 (LlamaFactory keeps trainable params in fp32: param 4 + grad 4 + Adam m, v 8)
  activations    per token per layer, what autograd keeps with frozen base weights (a frozen Linear keeps
                 no input; LoRA's A keeps its dropout mask (1 B) and bf16 input (2 B)):
                   2 RMSNorms         4h each (HF keeps an fp32 copy) | 2h with Liger
                   attention          2(2 hq + 2 hkv) q, k, v, out (FA2; SDPA with a padding mask repeats k, v to hq)
                   Qwen3 q/k norms    4(hq + hkv) | 2(hq + hkv) with Liger
                   SwiGLU             6I (gate, silu(gate), up) | 4I with Liger
                   LoRA inputs        3 x (3h + hq + 2h + I) + 2 x 7r
                 without gradient checkpointing: L x that; with it (LlamaFactory's default): 2h per layer
                 (the checkpointed layer input) x L + one layer recomputed
  logits         12 V per token without Liger (fp32 log-softmax kept for backward + its gradient + fp32
                 logits gradient; 151,936-entry vocab); with Liger's fused linear cross-entropy only one chunk
                 of next_pow2(tokens / ceil(V / h)) rows is materialised (8 V per row) + 2h per token
  runtime        1.0 GiB (CUDA context, cuBLAS workspace, allocator slack)

Time: FLOPs per processed token (padding included — the GPU multiplies padding too), N_mm = parameters in
matmuls (all linear layers + the V x h lm_head), T = LoRA parameters, L layers, s = context length:
  full fine-tune  6 N_mm                        (reference)
  LoRA            4 N_mm + 6 T                  forward 2(N_mm + T); backward 2(N_mm + T) for activation
                                                gradients — they must still flow back through every frozen
                                                matrix to reach earlier layers' adapters — + 2T for LoRA weight
                                                gradients (so not 2 N + 4 T: the frozen backward is not free)
  + checkpointing 2(N_layers + T)               one extra forward of the decoder layers
  + attention     6 L hq s  (+ 2 L hq s with checkpointing)
  time = FLOPs / (MFU x peak), MFU (hardware FLOPs utilisation incl. recompute) = --mfu (default 35%) of
  165 TFLOPS dense bf16 (24 GB RTX 4090-class) and 989 TFLOPS (80 GB H100 SXM), with a floor of
  --launch-floor-ms per decoder layer per micro-batch (eager PyTorch launches ~120 kernels per LoRA layer
  forward + backward): tiny micro-batches are launch-bound, not FLOP-bound.

Prints a Markdown table; writes benchmarks/results/gpu_plan.json and benchmarks/results/gpu_plan.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any


from _common import (
    RESULTS,
    packed_blocks,
    padded_tokens,
    pt_blocks,
    recipe_config,
    row_lengths,
)

from vslm.recipes.matrix import load_recipes

VOCAB = 151936
GIB = 1024 ** 3
RUNTIME_GIB = 1.0
HEADROOM = 0.95  # plan to use at most 95% of the card

# Published configs (config.json of each checkpoint on the Hugging Face Hub).
ARCHS: dict[str, dict[str, Any]] = {
    "Qwen2.5-0.5B": {"layers": 24, "hidden": 896, "intermediate": 4864, "heads": 14, "kv_heads": 2, "head_dim": 64, "qkv_bias": True,
                         "qk_norm": False, "tied": True},
    "Qwen2.5-1.5B": {"layers": 28, "hidden": 1536, "intermediate": 8960, "heads": 12, "kv_heads": 2, "head_dim": 128, "qkv_bias": True,
                         "qk_norm": False, "tied": True},
    "Qwen3-0.6B": {"layers": 28, "hidden": 1024, "intermediate": 3072, "heads": 16, "kv_heads": 8, "head_dim": 128, "qkv_bias": False,
                       "qk_norm": True, "tied": True},
}
GPUS = {
    "24GB": {"name": "24 GB (RTX 4090-class)", "memory_gib": 24564 / 1024, "peak_tflops": 165.0},
    "80GB": {"name": "80 GB (H100 SXM)", "memory_gib": 81559 / 1024, "peak_tflops": 989.0},
}
ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def arch_for(model: str) -> dict[str, Any]:
    for key, arch in ARCHS.items():
        if key in model:
            return arch
    raise SystemExit(f"gpu_plan: no published architecture for `{model}` — add it to ARCHS")


def module_dims(a: dict[str, Any]) -> dict[str, tuple[int, int]]:
    h, hq, hkv, inter = a["hidden"], a["heads"] * a["head_dim"], a["kv_heads"] * a["head_dim"], a["intermediate"]
    return {"q_proj": (h, hq), "k_proj": (h, hkv), "v_proj": (h, hkv), "o_proj": (hq, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}


def param_counts(a: dict[str, Any]) -> dict[str, int]:
    h, L = a["hidden"], a["layers"]
    hq, hkv = a["heads"] * a["head_dim"], a["kv_heads"] * a["head_dim"]
    linear = sum(i * o for i, o in module_dims(a).values())
    per_layer = linear + (hq + 2 * hkv if a["qkv_bias"] else 0) + 2 * h + (2 * a["head_dim"] if a["qk_norm"] else 0)
    embed = VOCAB * h
    total = L * per_layer + embed + h + (0 if a["tied"] else embed)
    return {"total": total, "embedding": embed, "layers_linear": L * linear, "matmul": L * linear + embed}


def lora_params(a: dict[str, Any], rank: int, targets: list[str]) -> int:
    return a["layers"] * sum(rank * (i + o) for name, (i, o) in module_dims(a).items() if name in targets)


def targets_of(lora: dict[str, Any]) -> list[str]:
    t = lora["target"]
    return ALL_TARGETS if t == "all" else [x.strip() for x in str(t).split(",")]


def activation_bytes_per_token_layer(a: dict[str, Any], rank: int, dropout: float, liger: bool, repeat_kv: bool) -> int:
    h, inter = a["hidden"], a["intermediate"]
    hq, hkv = a["heads"] * a["head_dim"], a["kv_heads"] * a["head_dim"]
    norm = 2 * h if liger else 4 * h
    kv = hq if repeat_kv else hkv
    b = 2 * norm + 2 * (2 * hq + 2 * kv)
    if a["qk_norm"]:
        b += (2 if liger else 4) * (hq + hkv)
    b += (4 if liger else 6) * inter
    lora_in = 3 * h + hq + 2 * h + inter
    b += (3 if dropout > 0 else 2) * lora_in + 2 * 7 * rank
    return b


def memory(a: dict[str, Any], recipe: dict[str, Any], tokens: int, liger: bool, checkpointing: bool, repeat_kv: bool) -> dict[str, float]:
    counts = param_counts(a)
    rank = recipe["lora"]["rank"]
    trainable = lora_params(a, rank, targets_of(recipe["lora"]))
    layer = activation_bytes_per_token_layer(a, rank, recipe["lora"]["dropout"], liger, repeat_kv)
    h, L = a["hidden"], a["layers"]
    final_norm = (2 if liger else 4) * h
    if checkpointing:
        act = tokens * (L * 2 * h + layer + final_norm)
    else:
        act = tokens * (L * layer + final_norm)
    if liger:
        chunk = 2 ** math.ceil(math.log2(max(1, math.ceil(tokens / math.ceil(VOCAB / h)))))
        logits = chunk * VOCAB * 8 + tokens * 2 * h
    else:
        logits = tokens * VOCAB * 12
    out = {"weights": 2 * counts["total"], "lora_adam": 16 * trainable, "activations": act, "logits": logits,
           "runtime": RUNTIME_GIB * GIB}
    out["total"] = sum(out.values())
    return {k: v / GIB for k, v in out.items()}


def flops_per_token(a: dict[str, Any], trainable: int, checkpointing: bool, context: float) -> float:
    counts = param_counts(a)
    hq = a["heads"] * a["head_dim"]
    f = 4 * counts["matmul"] + 6 * trainable + 6 * a["layers"] * hq * context
    if checkpointing:
        f += 2 * (counts["layers_linear"] + trainable) + 2 * a["layers"] * hq * context
    return f


def dataset_tokens(recipe, stage) -> dict[str, Any]:
    cfg = recipe_config(stage.path)
    family = recipe["family"]
    if stage.kind == "train_pt":
        pt = pt_blocks(cfg, family)
        return {"rows": pt["rows"], "useful": pt["useful"], "no_packing": None, "packed": pt, "shipped": "pt (packed)", "pt": pt,
                "micro_batches": math.ceil(pt["blocks"] / cfg["per_device_train_batch_size"]), "epochs": cfg["num_train_epochs"],
                "context": cfg["cutoff_len"], "processed": pt["processed"]}
    lengths = row_lengths(cfg, family)
    nopack = padded_tokens(lengths, cfg["per_device_train_batch_size"], seed=cfg.get("seed", 42))
    packed = packed_blocks(cfg, family)
    packing = bool(cfg.get("packing") or cfg.get("neat_packing"))
    shipped = "neat_packing" if cfg.get("neat_packing") else "packing" if cfg.get("packing") else "no packing"
    batch = cfg["per_device_train_batch_size"]
    return {"rows": len(lengths), "useful": nopack["useful"], "no_packing": nopack, "packed": packed, "shipped": shipped,
            "processed": packed["processed"] if packing else nopack["processed"],
            "micro_batches": math.ceil(packed["blocks"] / batch) if packing else nopack["batches"],
            "epochs": cfg["num_train_epochs"], "context": cfg["cutoff_len"] if packing else nopack["mean_padded_len"],
            "alt_processed": nopack["processed"] if packing else packed["processed"],
            "alt_micro_batches": nopack["batches"] if packing else math.ceil(packed["blocks"] / batch),
            "alt_context": nopack["mean_padded_len"] if packing else cfg["cutoff_len"],
            "alt": "no packing" if packing else "neat_packing"}


def epoch_seconds(a, trainable, tokens, micro_batches, context, checkpointing, gpu, mfu, floor_ms) -> float:
    compute = flops_per_token(a, trainable, checkpointing, context) * tokens / (mfu * gpu["peak_tflops"] * 1e12)
    floor = micro_batches * a["layers"] * floor_ms / 1000 * (1.33 if checkpointing else 1.0)
    return max(compute, floor)


def plan(mfu: float, floor_ms: float) -> list[dict[str, Any]]:
    rows = []
    for name, recipe in load_recipes().items():
        a = arch_for(recipe["model"])
        counts = param_counts(a)
        trainable = lora_params(a, recipe["lora"]["rank"], targets_of(recipe["lora"]))
        for stage in recipe.train_stages:
            cfg = recipe_config(stage.path)
            data = dataset_tokens(recipe, stage)
            batch, cutoff = cfg["per_device_train_batch_size"], cfg["cutoff_len"]
            tokens_mb = batch * cutoff
            attn = cfg.get("flash_attn", "auto")
            padded = data["shipped"] == "no packing" or data["shipped"] == "neat_packing"
            repeat_kv = attn != "fa2" and padded  # SDPA with a mask falls back to repeated k, v
            liger_shipped = bool(cfg.get("enable_liger_kernel"))
            mem = {}
            for gc in (True, False):
                for liger in (False, True):
                    mem[f"gc_{'on' if gc else 'off'}_liger_{'on' if liger else 'off'}"] = memory(a, recipe.vars, tokens_mb, liger, gc, repeat_kv)
            shipped_key = f"gc_on_liger_{'on' if liger_shipped else 'off'}"
            per_gpu = {}
            for gkey, gpu in GPUS.items():
                budget = gpu["memory_gib"] * HEADROOM
                candidates = [(False, liger_shipped), (False, True), (True, liger_shipped), (True, True)]
                choice = next(((gc, lg) for gc, lg in candidates
                               if mem[f"gc_{'on' if gc else 'off'}_liger_{'on' if lg else 'off'}"]["total"] <= budget), None)
                if choice is None:
                    per_gpu[gkey] = {"fits": False}
                    continue
                gc, lg = choice
                secs = epoch_seconds(a, trainable, data["processed"], data["micro_batches"], data["context"], gc, gpu, mfu, floor_ms)
                shipped_secs = epoch_seconds(a, trainable, data["processed"], data["micro_batches"], data["context"], True, gpu, mfu, floor_ms)
                alt_secs = None
                if data.get("alt_processed"):
                    alt_secs = epoch_seconds(a, trainable, data["alt_processed"], data["alt_micro_batches"], data["alt_context"],
                                             gc, gpu, mfu, floor_ms)
                switches = ["bf16=true", f"flash_attn={attn}", f"enable_liger_kernel={'true' if lg else 'false'}",
                            f"disable_gradient_checkpointing={'false' if gc else 'true'}", data["shipped"]]
                per_gpu[gkey] = {"fits": True, "gradient_checkpointing": gc, "liger": lg,
                                 "memory_gib": round(mem[f"gc_{'on' if gc else 'off'}_liger_{'on' if lg else 'off'}"]["total"], 2),
                                 "epoch_s": round(secs, 1), "total_s": round(secs * data["epochs"], 1),
                                 "epoch_s_as_shipped": round(shipped_secs, 1),
                                 "epoch_s_alt_packing": None if alt_secs is None else round(alt_secs, 1), "switches": switches}
            rows.append({
                "recipe": name + (" (pt)" if stage.kind == "train_pt" else ""), "model": recipe["model"],
                "params": counts["total"], "matmul_params": counts["matmul"], "lora_rank": recipe["lora"]["rank"],
                "lora_params": trainable, "batch": batch, "cutoff": cutoff, "micro_batch_tokens": tokens_mb,
                "epochs": data["epochs"], "datasets": cfg["dataset"], "rows": data["rows"], "useful_tokens_per_epoch": data["useful"],
                "processed_tokens_per_epoch": round(data["processed"]), "packing": data["shipped"], "alt_packing": data.get("alt"),
                "flops_per_token_lora": flops_per_token(a, trainable, False, data["context"]),
                "flops_per_token_full": 6 * counts["matmul"], "flash_attn": attn, "liger_as_shipped": liger_shipped,
                "memory_gib": {k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in mem.items()},
                "memory_as_shipped_gib": round(mem[shipped_key]["total"], 2), "gpus": per_gpu,
                **({"pt": data["pt"]} if data.get("pt") else {}),
            })
    return rows


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 10:
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def gpu_cells(r: dict[str, Any], compact: bool) -> list[str]:
    """One table cell per GPU: the switches that fit, peak memory and time per epoch (and in all)."""
    cells = []
    for gkey in GPUS:
        g = r["gpus"][gkey]
        if not g["fits"]:
            cells.append("does not fit")
            continue
        switches = f"GC {'on' if g['gradient_checkpointing'] else 'off'}, Liger {'on' if g['liger'] else 'off'}"
        if compact:
            cells.append(f"{switches} → {g['memory_gib']:.1f} GiB, {fmt_time(g['epoch_s'])} ({fmt_time(g['total_s'])})")
        else:
            cells.append(f"{switches}, {g['memory_gib']:.1f}, {fmt_time(g['epoch_s'])} ({fmt_time(g['total_s'])} × {r['epochs']} ep)")
    return cells


def markdown(rows: list[dict[str, Any]], mfu: float, floor_ms: float) -> str:
    lines = [
        (f"Assumptions: bf16 weights, LoRA in fp32 with AdamW; worst-case micro-batch = batch x cutoff; "
        f"{int(mfu * 100)}% utilisation of 165 TFLOPS (24 GB, RTX 4090-class) / 989 TFLOPS (80 GB, H100) dense bf16, "
        f"launch floor {floor_ms} ms per layer per micro-batch; LoRA FLOPs/token = 4·N + 6·T "
        f"(+2·(N_layers+T) with gradient checkpointing, + attention), full fine-tune 6·N. Tokens = the recipe's datasets "
        f"tokenised by LlamaFactory with the real Qwen tokenizer, padding or packing as shipped. Memory in GiB."),
        "",
        "| recipe | model (params) | LoRA params | batch × cutoff | weights | LoRA+Adam | act. GC on / off | logits w/o / with Liger | peak as shipped | tokens/epoch useful → processed | 24 GB: config, peak, time/epoch (total) | 80 GB: config, peak, time/epoch (total) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["memory_gib"]
        lig = "on" if r["liger_as_shipped"] else "off"
        cells = gpu_cells(r, compact=False)
        lines.append(
            f"| `{r['recipe']}` | {r['model'].split('/')[-1]} ({r['params'] / 1e9:.2f} B) | {r['lora_params'] / 1e6:.1f} M (r{r['lora_rank']}) "
            f"| {r['batch']} × {r['cutoff']} | {m['gc_on_liger_off']['weights']:.2f} | {m['gc_on_liger_off']['lora_adam']:.2f} "
            f"| {m[f'gc_on_liger_{lig}']['activations']:.2f} / {m[f'gc_off_liger_{lig}']['activations']:.2f} "
            f"| {m['gc_on_liger_off']['logits']:.2f} / {m['gc_on_liger_on']['logits']:.2f} | {r['memory_as_shipped_gib']:.1f} "
            f"| {r['useful_tokens_per_epoch']:,} → {r['processed_tokens_per_epoch']:,} ({r['packing']}) | {cells[0]} | {cells[1]} |")
    lines += ["", "Switches that get there (per recipe, 24 GB card): "]
    for r in rows:
        g = r["gpus"]["24GB"]
        if not g["fits"]:
            continue
        alt = ""
        if g.get("epoch_s_alt_packing") is None or abs(g["epoch_s_alt_packing"] - g["epoch_s"]) < 0.1 * g["epoch_s"]:
            pass
        elif r["alt_packing"] == "neat_packing":
            alt = f"; neat_packing would take {fmt_time(g['epoch_s_alt_packing'])}/epoch instead of {fmt_time(g['epoch_s'])}"
        elif g.get("epoch_s_alt_packing") is not None:
            alt = f"; without packing it would take {fmt_time(g['epoch_s_alt_packing'])}/epoch"
        gc_note = ""
        if not g["gradient_checkpointing"]:
            gc_note = f" (as shipped, with LlamaFactory's default checkpointing: {fmt_time(g['epoch_s_as_shipped'])}/epoch)"
        lines.append(f"- `{r['recipe']}`: {' '.join(g['switches'])}{gc_note}{alt}")
        if r.get("pt"):
            pt = r["pt"]
            lines.append(f"  - the pt stage concatenates each of its {pt['workers']} preprocessing shards separately and drops each "
                         f"shard's remainder: {pt['blocks']} blocks of {pt['block_len']} tokens, {pt['dropped_tokens']:,} of "
                         f"{pt['corpus_tokens']:,} corpus tokens never trained on")
    return "\n".join(lines)


def compact_markdown(rows: list[dict[str, Any]]) -> str:
    """The short table for the README."""
    lines = ["| recipe | model | LoRA params | batch × cutoff | peak as shipped (GC on) | 24 GB: switches → peak, time/epoch (all epochs) | 80 GB: switches → peak, time/epoch (all epochs) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = gpu_cells(r, compact=True)
        lines.append(f"| `{r['recipe']}` | {r['model'].split('/')[-1]} | {r['lora_params'] / 1e6:.1f} M | {r['batch']} × {r['cutoff']} "
                     f"| {r['memory_as_shipped_gib']:.1f} GiB | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mfu", type=float, default=0.35, help="achievable FLOPs utilisation (default 0.35)")
    parser.add_argument("--launch-floor-ms", type=float, default=0.6, help="eager launch floor per decoder layer per micro-batch")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = plan(args.mfu, args.launch_floor_ms)
    md = markdown(rows, args.mfu, args.launch_floor_ms)
    md = "## Summary\n\n" + compact_markdown(rows) + "\n\n## Details\n\n" + md
    print(md)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"benchmark": "gpu_plan", "date": dt.date.today().isoformat(), "mfu": args.mfu,
            "launch_floor_ms_per_layer": args.launch_floor_ms, "gpus": GPUS, "archs": ARCHS, "vocab": VOCAB,
            "runtime_overhead_gib": RUNTIME_GIB, "headroom": HEADROOM,
            "formulas": {"lora_flops_per_token": "4*N_matmul + 6*T (+2*(N_layers+T) with gradient checkpointing) + 6*L*hq*s",
                         "full_flops_per_token": "6*N_matmul",
                         "time": "max(FLOPs / (mfu * peak), micro_batches * layers * launch_floor)"}}
    (args.out_dir / "gpu_plan.json").write_text(json.dumps({**meta, "recipes": rows}, indent=1), encoding="utf-8")
    (args.out_dir / "gpu_plan.md").write_text(md + "\n", encoding="utf-8")
    print(json.dumps({"benchmark": "gpu_plan", "mfu": args.mfu,
                      "recipes": {r["recipe"]: {"memory_as_shipped_gib": r["memory_as_shipped_gib"],
                                               "epoch_s_24GB": r["gpus"]["24GB"].get("epoch_s"),
                                               "epoch_s_80GB": r["gpus"]["80GB"].get("epoch_s")} for r in rows}}))


if __name__ == "__main__":
    main()

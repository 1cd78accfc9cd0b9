"""Build the tiny offline stand-ins for Qwen2.5 and Qwen3: Qwen tokenizer cut to this repository's text, small
network, short warm-up.

What a tiny model is for: proving on a 2-core CPU that every stage of the loop works and that fine-tuning puts
the taught facts into the served model. What it is not: a model that generalises to reworded questions — that is
what the real Qwen weights in the recipes are for.

The tokenizer is the real Qwen2.5/Qwen3 one cut to the tokens the repository's training text uses
(`tokenizer.trimmed_qwen_tokenizer`): it splits that text exactly as Qwen does and still encodes anything, but
the output layer has ~17k rows instead of 151,936, which is what made the old 2-layer, 64-wide model slow and
unable to learn. A random network barely moves under LoRA, so each tiny model gets a short full fine-tune on the
project's general (non-domain) instructions first — the same data later measures forgetting.
Built models are cached by a hash of their recipe (spec, warm-up, tokenizer vocabulary) under $VSLM_CACHE
(default ~/.cache/vslm) and linked into models/<name>; they are rebuilt only when one of those changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ..core.jsonio import atomic_write_json, atomic_write_text, sha256_file
from ..core.paths import DATASETS, MODELS, ROOT

CACHE = Path(os.environ.get("VSLM_CACHE", Path.home() / ".cache" / "vslm"))
WARMUP_DATA = DATASETS / "general" / "general_train.jsonl"
RECIPE_VERSION = 2  # bump when the build code changes what it produces

# Head size 64: vLLM's CPU attention supports 32, 64, 80, ... only.
SPECS: dict[str, dict] = {
    "tiny-qwen2": {
        "family": "qwen2",
        "template": "qwen",
        "config": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1_000_000.0),
    },
    "tiny-qwen3": {
        "family": "qwen3",
        "template": "qwen3",
        "config": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, rope_theta=1_000_000.0),
        # Packed rows: 6.8 epochs of the general rows in the same 600 steps instead of 1.9 (final loss 4.29 instead
        # of 6.31; about 7 minutes instead of 3), on which platform_classifier classifies unseen questions better
        # (benchmarks/tiny_classifier.py). tiny-qwen2 keeps the shorter warm-up: the main job's reworded recall did
        # not improve on such a base (benchmarks/tiny_full_variants.py --warm-up), and its first build must stay
        # under 5 minutes. "native": bf16 autocast where the CPU has bf16 in hardware, else fp32 (two builds).
        "warmup": dict(neat_packing=True, flash_attn="disabled", cutoff_len=256, bf16="native"),
    },
}
WARMUP = dict(seed=0, max_steps=600, learning_rate=3.0e-3, per_device_train_batch_size=8, cutoff_len=160)


def warm_up_settings(name: str) -> dict:
    """WARMUP with the model's own changes (SPECS[name]["warmup"]), bf16 "native" resolved on this machine."""
    settings = {**WARMUP, **SPECS[name].get("warmup", {})}
    if settings.get("bf16") == "native":
        from ..recipes.resolve import native_cpu_bf16

        settings["bf16"] = native_cpu_bf16()
    return settings


def tiny_tokenizer(name: str):
    from .tokenizer import repository_texts, trimmed_qwen_tokenizer

    texts = repository_texts(ROOT)
    return trimmed_qwen_tokenizer(SPECS[name]["family"], texts)


def vocab_digest(tokenizer) -> str:
    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:12]


def spec_hash(name: str, tokenizer=None) -> str:
    spec = {k: v for k, v in SPECS[name].items() if k != "warmup"}
    payload = {"spec": spec, "warmup": warm_up_settings(name), "version": RECIPE_VERSION, "data": sha256_file(WARMUP_DATA),
               "vocab": vocab_digest(tokenizer or tiny_tokenizer(name))}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _init_model(name: str, tokenizer, out: Path, network: dict | None = None) -> None:
    """The seeded random network; `network` (config keys) is for benchmarks that measure another size."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    spec = SPECS[name]
    torch.manual_seed(WARMUP["seed"])
    config_cls, model_cls = (Qwen3Config, Qwen3ForCausalLM) if spec["family"] == "qwen3" else (Qwen2Config, Qwen2ForCausalLM)
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = config_cls(vocab_size=-(-len(tokenizer) // 64) * 64, tie_word_embeddings=True, bos_token_id=end_of_text,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=end_of_text, **{**spec["config"], **(network or {})})
    model = model_cls(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_of_text]
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _warm_up(name: str, init_dir: Path, out_dir: Path, overrides: dict | None = None) -> None:
    """The warm-up run; `overrides` (LlamaFactory keys) are for benchmarks that measure another warm-up."""
    spec = SPECS[name]
    config = {
        "model_name_or_path": str(init_dir),
        "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset_dir": str(ROOT), "dataset": "general_train", "template": spec["template"],
        "output_dir": str(out_dir), "overwrite_output_dir": True, "overwrite_cache": True,
        "gradient_accumulation_steps": 1, "lr_scheduler_type": "cosine", "warmup_ratio": 0.05,
        "logging_steps": 10, "save_strategy": "no", "report_to": "none", "use_cpu": True, "bf16": False, "disable_gradient_checkpointing": True,
        "preprocessing_num_workers": 1, "dataloader_num_workers": 0, "disable_tqdm": False,
        **warm_up_settings(name), **(overrides or {}),
    }
    if spec["family"] == "qwen3":
        config["enable_thinking"] = False
    cfg_path = out_dir.parent / f"{out_dir.name}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    print(f"[build-tiny] warm-up: llamafactory-cli train {cfg_path}", flush=True)
    result = subprocess.run([str(Path(sys.executable).with_name("llamafactory-cli")), "train", str(cfg_path)], cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"[build-tiny] warm-up of {name} failed (exit {result.returncode}); see the log above")


KEEP = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "chat_template.jinja", "special_tokens_map.json", "trainer_log.jsonl")


def model_card(name: str, digest: str, vocab: int) -> str:
    spec, cfg, warm_up = SPECS[name], SPECS[name]["config"], warm_up_settings(name)
    return f"""# {name} (build {digest}) — a test stand-in, not a language model

Built offline by `vslm build-tiny` from VSLM Recipes: a {spec["family"]} network of {cfg["num_hidden_layers"]} layers,
hidden size {cfg["hidden_size"]}, with the Qwen tokenizer cut to the {vocab:,} tokens this repository's training text uses,
pre-trained for {warm_up["max_steps"]} steps{" of packed rows" if warm_up.get("neat_packing") else ""} on `{WARMUP_DATA.relative_to(ROOT)}` (seed {warm_up["seed"]}).

**What it is for**: proving on a 2-core CPU that every stage of the loop runs (train, merge, serve with vLLM or
llama.cpp, evaluate) and that fine-tuning puts taught facts into the served model: after `vslm demo` fully
fine-tunes it on the first telecom rows, it states the key facts of their training questions (README, RESULTS).

**What it is not**: a model that knows anything or generalises. Asked a taught fact in new words it does little
better than one canned answer, it never refuses an out-of-scope question, and it classifies unseen questions at
0.58-0.75 accuracy (a lookup of its training rows: 0.83). Carrying a fact to new words is what the real Qwen weights in the recipes are for. Measurements: the
repository's README, "The tiny CPU profile".
"""


def build_tiny(name: str, force: bool = False) -> Path:
    """Return models/<name>, building it (or linking the cached build) when needed."""
    if name not in SPECS:
        raise SystemExit(f"unknown tiny model `{name}`: choose one of {', '.join(SPECS)}")
    tokenizer = tiny_tokenizer(name)
    digest = spec_hash(name, tokenizer)
    cached = CACHE / "tiny" / f"{name}-{digest}"
    (CACHE / "tiny").mkdir(parents=True, exist_ok=True)
    with open(CACHE / "tiny" / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent builders (parallel tests, two shells) wait for one build
        return _build_locked(name, digest, cached, force, tokenizer)


def _build_locked(name: str, digest: str, cached: Path, force: bool, tokenizer) -> Path:
    link = MODELS / name
    if force and cached.exists():
        shutil.rmtree(cached)
    if not (cached / "vslm_tiny.json").is_file():
        work = CACHE / "tiny" / f".{name}-{digest}.work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print(f"[build-tiny] {name}: new build {digest} (random init + warm-up on {WARMUP_DATA.relative_to(ROOT)})", flush=True)
        _init_model(name, tokenizer, work / "init")
        _warm_up(name, work / "init", work / "warm")
        final = work / "final"
        final.mkdir()
        for file in KEEP:
            src = work / "warm" / file
            if src.is_file():
                shutil.copy2(src, final / file)
        atomic_write_json(final / "vslm_tiny.json", {"name": name, "hash": digest, **SPECS[name], "warmup": warm_up_settings(name),
                                                     "vocab": {"size": len(tokenizer), "digest": vocab_digest(tokenizer)}})
        shutil.rmtree(cached, ignore_errors=True)
        final.rename(cached)
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"[build-tiny] {name}: cached build {digest} at {cached}", flush=True)
    card = model_card(name, digest, len(tokenizer))
    if not (cached / "README.md").is_file() or (cached / "README.md").read_text(encoding="utf-8") != card:
        atomic_write_text(cached / "README.md", card)  # builds from before the card existed, or an older card text
    MODELS.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == cached:
            return link
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        else:
            link.unlink()
    tmp_link = link.with_name(f".{name}.link")
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(cached)
    tmp_link.replace(link)
    return link

"""Build the tiny offline stand-ins for Qwen2.5 and Qwen3: real tokenizer, small network, short warm-up.

A random network barely moves under LoRA, so each tiny model gets a short full fine-tune on the
project's general (non-domain) instructions first — the same data later measures forgetting.
Built models are cached by a hash of their recipe under $VSLM_CACHE (default ~/.cache/vslm) and
linked into models/<name>; they are rebuilt only when the recipe or the warm-up data changes.
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

from .jsonio import atomic_write_json, sha256_file
from .paths import DATASETS, MODELS, ROOT

CACHE = Path(os.environ.get("VSLM_CACHE", Path.home() / ".cache" / "vslm"))
WARMUP_DATA = DATASETS / "general" / "general_train.jsonl"
RECIPE_VERSION = 1  # bump when the build code changes what it produces

# Head size 32: vLLM's CPU attention supports 32, 64, 80, ... only.
SPECS: dict[str, dict] = {
    "tiny-qwen2": {
        "family": "qwen2",
        "template": "qwen",
        "config": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, max_position_embeddings=4096, rope_theta=1_000_000.0),
    },
    "tiny-qwen3": {
        "family": "qwen3",
        "template": "qwen3",
        "config": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, head_dim=32, max_position_embeddings=4096, rope_theta=1_000_000.0),
    },
}
WARMUP = dict(seed=0, max_steps=250, learning_rate=5.0e-3, per_device_train_batch_size=8, cutoff_len=160)


def spec_hash(name: str) -> str:
    payload = {"spec": SPECS[name], "warmup": WARMUP, "version": RECIPE_VERSION, "data": sha256_file(WARMUP_DATA)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _init_model(name: str, out: Path) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from .tokenizer import MODEL_VOCAB_SIZE, build_qwen_tokenizer

    spec = SPECS[name]
    torch.manual_seed(WARMUP["seed"])
    config_cls, model_cls = (Qwen3Config, Qwen3ForCausalLM) if spec["family"] == "qwen3" else (Qwen2Config, Qwen2ForCausalLM)
    config = config_cls(vocab_size=MODEL_VOCAB_SIZE, tie_word_embeddings=True, bos_token_id=151643,
                        eos_token_id=151645, pad_token_id=151643, **spec["config"])
    model = model_cls(config)
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    build_qwen_tokenizer(spec["family"]).save_pretrained(out)


def _warm_up(name: str, init_dir: Path, out_dir: Path) -> None:
    spec = SPECS[name]
    config = {
        "model_name_or_path": str(init_dir),
        "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset_dir": str(ROOT), "dataset": "general_train", "template": spec["template"],
        "output_dir": str(out_dir), "overwrite_output_dir": True, "overwrite_cache": True,
        "gradient_accumulation_steps": 1, "lr_scheduler_type": "cosine", "warmup_ratio": 0.05,
        "logging_steps": 10, "save_strategy": "no", "report_to": "none", "use_cpu": True, "bf16": False, "disable_gradient_checkpointing": True,
        "preprocessing_num_workers": 1, "dataloader_num_workers": 0, "disable_tqdm": False,
        **WARMUP,
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


def build_tiny(name: str, force: bool = False) -> Path:
    """Return models/<name>, building it (or linking the cached build) when needed."""
    if name not in SPECS:
        raise SystemExit(f"unknown tiny model `{name}`: choose one of {', '.join(SPECS)}")
    digest = spec_hash(name)
    cached = CACHE / "tiny" / f"{name}-{digest}"
    (CACHE / "tiny").mkdir(parents=True, exist_ok=True)
    with open(CACHE / "tiny" / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent builders (parallel tests, two shells) wait for one build
        return _build_locked(name, digest, cached, force)


def _build_locked(name: str, digest: str, cached: Path, force: bool) -> Path:
    link = MODELS / name
    if force and cached.exists():
        shutil.rmtree(cached)
    if not (cached / "vslm_tiny.json").is_file():
        work = CACHE / "tiny" / f".{name}-{digest}.work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print(f"[build-tiny] {name}: new build {digest} (random init + warm-up on {WARMUP_DATA.relative_to(ROOT)})", flush=True)
        _init_model(name, work / "init")
        _warm_up(name, work / "init", work / "warm")
        final = work / "final"
        final.mkdir()
        for file in KEEP:
            src = work / "warm" / file
            if src.is_file():
                shutil.copy2(src, final / file)
        atomic_write_json(final / "vslm_tiny.json", {"name": name, "hash": digest, **SPECS[name], "warmup": WARMUP})
        shutil.rmtree(cached, ignore_errors=True)
        final.rename(cached)
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"[build-tiny] {name}: cached build {digest} at {cached}", flush=True)
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

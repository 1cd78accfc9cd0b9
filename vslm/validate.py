"""`vslm validate`: every recipe through LlamaFactory's own argument parser plus the repository's rules.

All problems of all files are collected and reported together, each as `file: key: problem — fix`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from .matrix import load_matrix, load_recipes
from .paths import ROOT
from .registry import load_registry

TRAIN_KINDS = ("train", "train_pt")


def _kind_of(config: dict[str, Any]) -> str:
    if "export_dir" in config:
        return "merge"
    if config.get("do_train") or "stage" in config:
        return "train"
    return "infer"


def parser_classes(kind: str):
    from llamafactory.hparams import parser as lf

    return lf._TRAIN_ARGS if kind == "train" else lf._INFER_ARGS


def known_keys(kind: str) -> set[str]:
    return {f.name for cls in parser_classes(kind) for f in dataclasses.fields(cls)}


def unknown_key_problems(kind: str, config: dict[str, Any]) -> list[str]:
    """`key: not a LlamaFactory <kind> argument — fix` for every key LlamaFactory would reject."""
    known = known_keys(kind)
    problems = []
    for key in (k for k in config if k not in known):
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
        fix = f"did you mean `{close[0]}`?" if close else "remove it (LlamaFactory rejects unknown keys)"
        problems.append(f"{key}: not a LlamaFactory {kind} argument — {fix}")
    return problems


def _family_of(model: str, families: dict[str, Any]) -> str | None:
    for name, fam in families.items():
        if Path(fam.get("tiny_model", "")).name and Path(fam["tiny_model"]).name in model:
            return name
    local = ROOT / model / "config.json"
    if local.is_file():
        import json

        return json.loads(local.read_text())["model_type"]
    lowered = model.lower()
    if "qwen3" in lowered:
        return "qwen3"
    if "qwen2" in lowered:
        return "qwen2"
    return None


def parse_with_llamafactory(kind: str, config: dict[str, Any]) -> str | None:
    """Run LlamaFactory's HfArgumentParser on the config; return its error message, if any."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(parser_classes(kind))
    cfg = dict(config)
    if kind == "train":
        import torch

        if not torch.cuda.is_available():
            cfg["use_cpu"] = True  # bf16 is valid for the GPU the recipe targets; parse as if on one
        cfg["output_dir"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "vslm-validate")
    try:
        parser.parse_dict(cfg, allow_extra_keys=False)
    except Exception as exc:  # LlamaFactory/transformers raise ValueError/TypeError/... from __post_init__
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def validate_file(path: Path, matrix: dict[str, Any], registry: dict[str, Any], rank_of: dict[str, int]) -> list[str]:
    rel = path.relative_to(ROOT) if path.is_absolute() and path.is_relative_to(ROOT) else path
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        return [f"{rel}: cannot be read as YAML: {str(exc).splitlines()[0]}"]
    if not isinstance(config, dict):
        return [f"{rel}: expected a mapping of LlamaFactory keys"]
    problems = []
    kind = _kind_of(config)
    known = known_keys(kind)
    unknown = [k for k in config if k not in known]
    problems += [f"{rel}: {p}" for p in unknown_key_problems(kind, config)]
    error = parse_with_llamafactory(kind, {k: v for k, v in config.items() if k not in unknown})
    if error:
        problems.append(f"{rel}: (LlamaFactory parser) {error}")
    model, template = str(config.get("model_name_or_path", "")), config.get("template")
    family = _family_of(model, matrix["families"])
    if template and family in matrix["families"]:
        allowed = matrix["families"][family]["templates"]
        if template not in allowed:
            problems.append(f"{rel}: template: `{template}` does not match the {family} model `{model}` — use template: {allowed[0]}")
    if family == "qwen3" and config.get("stage", "sft") == "sft" and config.get("enable_thinking", True) and template == "qwen3":
        problems.append(f"{rel}: enable_thinking: Qwen3 trained on non-reasoning data needs `enable_thinking: false`")
    for name in [d.strip() for d in str(config.get("dataset", "") or "").split(",") if d.strip()]:
        if name not in registry:
            close = difflib.get_close_matches(name, registry, n=1)
            fix = f"did you mean `{close[0]}`?" if close else "register it with `vslm convert`"
            problems.append(f"{rel}: dataset: `{name}` is not registered in dataset_info.json — {fix}")
        elif not (ROOT / registry[name].get("file_name", "")).exists():
            problems.append(f"{rel}: dataset: `{name}` is registered but its file {registry[name]['file_name']} is missing")
    if kind == "merge" and config.get("quantization_bit") is not None:
        problems.append(f"{rel}: quantization_bit: merge recipes must load the unquantized base — remove quantization_bit")
    stem = path.stem.removesuffix("_vllm")
    if config.get("infer_backend") == "vllm" and stem in rank_of:
        served = config.get("vllm_max_lora_rank", 16)
        if served < rank_of[stem]:
            problems.append(f"{rel}: vllm_max_lora_rank: {served} < lora_rank {rank_of[stem]} of recipes/{stem}.yaml — set it to {rank_of[stem]}")
    return problems


def recipe_files() -> list[Path]:
    return sorted(p for p in (ROOT / "recipes").rglob("*.yaml"))


def validate_all(files: list[Path] | None = None) -> list[str]:
    matrix = load_matrix()
    registry = load_registry()
    rank_of = {}
    for recipe in load_recipes().values():
        rank_of[recipe.name] = recipe["lora"]["rank"]
    problems = []
    for path in files or recipe_files():
        problems += validate_file(path.resolve(), matrix, registry, rank_of)
    return problems

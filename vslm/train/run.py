"""Run a recipe's stages through llamafactory-cli (train, export), with pre-flight checks and run records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import RecipeError
from ..recipes.matrix import Recipe, Stage, format_overrides, load_matrix, profile_overrides, saves_root
from ..core.paths import ROOT
from ..data.registry import load_registry
from .runrecord import write_run_record


def llamafactory_cli() -> str:
    local = Path(sys.executable).with_name("llamafactory-cli")
    found = str(local) if local.exists() else shutil.which("llamafactory-cli")
    if not found:
        raise RecipeError("llamafactory-cli not found: run `make install` and use .venv/bin/vslm")
    return found


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` overrides typed exactly as `llamafactory-cli` types them (OmegaConf.from_cli): `1e-2` is a number."""
    from omegaconf import OmegaConf

    for item in items:
        if "=" not in item:
            raise RecipeError(f"override `{item}` is not key=value")
    try:
        return OmegaConf.to_container(OmegaConf.from_cli(list(items)))
    except Exception as exc:  # OmegaConf's grammar errors carry the offending text
        raise RecipeError(f"overrides {' '.join(items)}: not what llamafactory-cli accepts ({str(exc).splitlines()[0]})") from None


def _looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "models/", "saves/", "~")) or Path(ROOT / model).exists()


def stage_overrides(recipe: Recipe, stage: Stage, profile: str | None, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The key=value overrides a stage runs with: its profile's, then the caller's (see zero3_without_use_cpu)."""
    overrides = {**profile_overrides(recipe, stage, profile, load_matrix(), saves_root()), **(extra or {})}
    return zero3_without_use_cpu(stage, overrides, extra or {})


def accelerator_count() -> int:
    """GPUs (or other accelerators) LlamaFactory sees; 0 on a CPU-only machine."""
    from llamafactory.extras.misc import get_device_count

    return get_device_count()


def launched_processes() -> int:
    """How many processes `llamafactory-cli train` starts: its launcher uses torchrun with NNODES x NPROC_PER_NODE
    when FORCE_TORCHRUN is set or more than one device is visible, else one process."""
    from llamafactory.extras.misc import is_env_enabled

    devices = accelerator_count()
    if not (is_env_enabled("FORCE_TORCHRUN") or devices > 1):
        return 1
    counts = {"NNODES": os.getenv("NNODES", "1"), "NPROC_PER_NODE": os.getenv("NPROC_PER_NODE", str(devices))}
    for name, value in counts.items():
        if not value.strip().isdigit():
            raise RecipeError(f"{name}={value} is not a whole number of nodes/processes — set e.g. {name}=2")
    return max(1, int(counts["NNODES"]) * int(counts["NPROC_PER_NODE"]))


_NOTED: set[str] = set()


ZERO3_ON_CPU = ("starts from wrong weights on some runs here (first-step losses 8.72 and a flat 9.75 = ln of the vocabulary "
                "size, where DDP and ZeRO-2 give 7.70 on every run) — use recipes/deepspeed/ds_z2.json on CPU; ZeRO-3 is "
                "for GPUs")


def zero3_without_use_cpu(stage: Stage, overrides: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """ZeRO-3 over several processes. Without a GPU it is refused (ZERO3_ON_CPU: measured, unresolved). With GPUs it
    fails with use_cpu=true ("train_batch_size ... 8 != 4 * 1 * 1": transformers then starts the process group the CPU
    way and DeepSpeed counts one process): a profile's use_cpu is dropped, with a note; one given by the caller or the
    recipe fails here."""
    config = effective_config(stage, overrides)
    if not isinstance(config.get("deepspeed"), str):
        return overrides
    try:
        zero_stage = json.loads((ROOT / config["deepspeed"]).read_text(encoding="utf-8"))["zero_optimization"]["stage"]
    except (OSError, ValueError, KeyError, TypeError):  # an unreadable config is `vslm validate`'s to report
        return overrides
    if zero_stage != 3 or (processes := launched_processes()) < 2:
        return overrides
    if accelerator_count() == 0:
        raise RecipeError(f"{stage.path}: deepspeed: ZeRO-3 ({config['deepspeed']}) over {processes} CPU processes {ZERO3_ON_CPU}")
    if config.get("use_cpu") is not True:
        return overrides
    why = (f"ZeRO-3 ({config['deepspeed']}) over {processes} processes fails with use_cpu=true (transformers then starts "
           f"the process group the CPU way and DeepSpeed counts one process)")
    if "use_cpu" in extra or "use_cpu" not in overrides:
        raise RecipeError(f"{stage.path}: use_cpu: {why} — remove use_cpu=true; without a GPU training runs on the CPU anyway (fp32)")
    note = f"note: dropped the profile's use_cpu=true: {why}; without a GPU training still runs on the CPU, in fp32"
    if note not in _NOTED:
        _NOTED.add(note)
        print(note, flush=True)
    return {k: v for k, v in overrides.items() if k != "use_cpu"}


def effective_config(stage: Stage, overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe file as LlamaFactory sees it with the overrides after it."""
    return {**yaml.safe_load((ROOT / stage.path).read_text(encoding="utf-8")), **overrides}


def preflight(stage: Stage, overrides: dict[str, Any]) -> dict[str, Any]:
    """The effective config, after one-line checks of what most often goes wrong."""
    config = effective_config(stage, overrides)
    model = str(config.get("model_name_or_path", ""))
    if _looks_local(model) and not (ROOT / model).expanduser().exists():
        hint = ("build the tiny models with `vslm build-tiny`" if model.startswith("models/")
                else "download the weights there") + " or pass model_name_or_path=<path>"
        raise RecipeError(f"{stage.path}: model_name_or_path `{model}` does not exist — {hint}")
    for key in ("adapter_name_or_path",):
        if config.get(key) and not (ROOT / str(config[key])).exists():
            raise RecipeError(f"{stage.path}: {key} `{config[key]}` does not exist — run the training stage first")
    if "dataset" in config:
        registry = load_registry()
        for name in str(config["dataset"]).split(","):
            name = name.strip()
            if name not in registry:
                raise RecipeError(
                    f"{stage.path}: dataset `{name}` is not registered in dataset_info.json — register it with "
                    f"`vslm convert ... --name {name}` or fix `dataset:`"
                )
            file = ROOT / registry[name].get("file_name", "")
            if not file.exists():
                raise RecipeError(f"dataset `{name}`: file {registry[name].get('file_name')} is missing")
    return config


def run_stage(recipe: Recipe, stage: Stage, profile: str | None, extra: dict[str, Any] | None = None) -> Path | None:
    overrides = stage_overrides(recipe, stage, profile, extra)
    config = preflight(stage, overrides)
    verb = "export" if stage.kind == "merge" else "train"
    cmd = [llamafactory_cli(), verb, str(stage.path), *format_overrides(overrides)]
    print("$ " + " ".join(["llamafactory-cli", *cmd[1:]]), flush=True)
    # the launcher starts `torchrun` by name (FORCE_TORCHRUN): find the one beside this Python even in a shell without the venv
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    result = subprocess.run(cmd, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise RecipeError(f"llamafactory-cli {verb} {stage.path} failed with exit code {result.returncode} (see its log above)")
    out = config.get("output_dir") or config.get("export_dir")
    if out:
        out_dir = ROOT / out
        write_run_record(out_dir, command=["llamafactory-cli", *cmd[1:]], recipe_file=ROOT / stage.path, overrides=overrides,
                         extra={"recipe": recipe.name, "stage": stage.kind, "profile": profile})
        return out_dir
    return None


def check_stage_arguments(recipe: Recipe, stage: Stage, profile: str | None, extra: dict[str, Any] | None) -> None:
    """A training stage's effective arguments (recipe file + overrides) through LlamaFactory's argument types and
    parser before anything runs, so a bad override (`learning_rate=abc`, a clash in a later stage) fails in seconds
    with one line instead of inside llamafactory-cli or after an earlier stage's training."""
    from ..recipes.validate import argument_problems, gpu_package_problems

    config = effective_config(stage, stage_overrides(recipe, stage, profile, extra))
    problems = argument_problems("train", config) + gpu_package_problems(config)
    if problems:
        raise RecipeError(f"{stage.path} (with its overrides): {'; '.join(problems)}")


def train(recipe: Recipe, profile: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    for stage in recipe.train_stages:
        check_stage_arguments(recipe, stage, profile, extra)
    out = None
    for stage in recipe.train_stages:
        out = run_stage(recipe, stage, profile, extra)
    assert out is not None
    return out


def merge(recipe: Recipe, profile: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    out = run_stage(recipe, recipe.stage("merge"), profile, extra)
    assert out is not None
    return out

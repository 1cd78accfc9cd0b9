"""Run a recipe's stages through llamafactory-cli (train, export), with pre-flight checks and run records."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


from ..core.errors import RecipeError
from ..recipes.matrix import Recipe, Stage
from ..recipes.resolve import Resolved, StageRun, effective_config, resolve
from ..core.paths import ROOT, rel
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


def run_llamafactory(verb: str, argv: list[str], log: Path | None = None) -> list[str]:
    """`llamafactory-cli <verb> <recipe file> <overrides>` from the repository root, echoed first; its output streams to
    the terminal, or into `log`. Returns the command as echoed; a non-zero exit is one RecipeError line."""
    cmd = [llamafactory_cli(), verb, *argv]
    shown = ["llamafactory-cli", *cmd[1:]]
    print("$ " + " ".join(shown), flush=True)
    # the launcher starts `torchrun` by name (FORCE_TORCHRUN): find the one beside this Python even in a shell without the venv
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    if log is None:
        result = subprocess.run(cmd, cwd=ROOT, env=env)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        where = f"see {rel(ROOT / log)}" if log is not None else "see its log above"
        raise RecipeError(f"llamafactory-cli {verb} {argv[0]} failed with exit code {result.returncode} ({where})")
    return shown


def run_stage(plan: Resolved, run: StageRun) -> Path | None:
    config = preflight(run.stage, run.overrides)
    verb = "export" if run.stage.kind == "merge" else "train"
    command = run_llamafactory(verb, run.argv())
    out = config.get("output_dir") or config.get("export_dir")
    if out:
        out_dir = ROOT / out
        write_run_record(out_dir, command=command, run=run,
                         extra={"recipe": plan.recipe.name, "stage": run.stage.kind, "profile": plan.profile})
        return out_dir
    return None


def check_stage_arguments(run: StageRun) -> None:
    """A training stage's effective arguments (recipe file + overrides) through LlamaFactory's argument types and
    parser before anything runs, so a bad override (`learning_rate=abc`, a clash in a later stage) fails in seconds
    with one line instead of inside llamafactory-cli or after an earlier stage's training."""
    from ..recipes.validate import argument_problems, gpu_package_problems

    problems = argument_problems("train", run.config) + gpu_package_problems(run.config)
    if problems:
        raise RecipeError(f"{run.stage.path} (with its overrides): {'; '.join(problems)}")


def train(recipe: Recipe, profile: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    plan = resolve(recipe, profile, extra)
    for run in plan.train_stages:
        check_stage_arguments(run)
    out = None
    for run in plan.train_stages:
        out = run_stage(plan, run)
    assert out is not None
    return out


def merge(recipe: Recipe, profile: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    plan = resolve(recipe, profile, extra)
    if plan.full_finetune:
        if not (plan.trained_dir / "config.json").is_file():
            raise RecipeError(f"{rel(plan.trained_dir)}: no fine-tuned model — run `vslm train {recipe.name} --profile {profile}` first")
        print(f"full fine-tune: {rel(plan.trained_dir)} is the fine-tuned model already, nothing to merge", flush=True)
        return plan.trained_dir
    out = run_stage(plan, plan.stage("merge"))
    assert out is not None
    return out

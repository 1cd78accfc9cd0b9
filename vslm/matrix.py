"""The recipe matrix (templates/matrix.yaml): every recipe's variables, with defaults applied."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .paths import ROOT, TEMPLATES

MATRIX = TEMPLATES / "matrix.yaml"


class RecipeError(Exception):
    """A problem a user can fix; str() is the one-line message."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class Stage:
    """One file rendered for a recipe."""

    kind: str  # train_pt | train | merge | infer | vllm
    template: str
    path: Path  # recipes/<file>.yaml relative to ROOT
    output_dir: str | None = None


@dataclass
class Recipe:
    name: str
    vars: dict[str, Any]
    stages: list[Stage] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.vars[key]

    @property
    def train_stages(self) -> list[Stage]:
        return [s for s in self.stages if s.kind in ("train_pt", "train")]

    def stage(self, kind: str) -> Stage:
        return next(s for s in self.stages if s.kind == kind)

    @property
    def saves(self) -> str:
        return f"saves/{self.name}"


def load_matrix(path: Path = MATRIX) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"{path}: recipe matrix not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    for key in ("defaults", "families", "profiles", "recipes"):
        if not isinstance(data.get(key), dict):
            raise RecipeError(f"{path}: top-level key `{key}` missing or not a mapping")
    return data


def expand(name: str, entry: dict[str, Any], matrix: dict[str, Any]) -> Recipe:
    """Apply defaults and switches, and compute the files and output folders of one recipe."""
    v = _merge(matrix["defaults"], entry)
    for switch, (value, _reason) in (entry.get("switches") or {}).items():
        v[switch] = value
    v["name"] = name
    saves = f"saves/{name}"
    v["adapter_dir"] = f"{saves}/adapter"
    v["merged_dir"] = f"{saves}/merged"
    v["serve_max_lora_rank"] = max(16, v["lora"]["rank"])  # vLLM's default max_lora_rank is 16
    recipe = Recipe(name, v)
    if v.get("pt"):
        recipe.stages.append(Stage("train_pt", "train_pt.yaml.j2", Path(f"recipes/{name}_pt.yaml"), f"{saves}/pt_adapter"))
    recipe.stages += [
        Stage("train", "train_sft.yaml.j2", Path(f"recipes/{name}.yaml"), v["adapter_dir"]),
        Stage("merge", "merge.yaml.j2", Path(f"recipes/{name}_merge.yaml"), v["merged_dir"]),
        Stage("infer", "infer.yaml.j2", Path(f"recipes/{name}_infer.yaml")),
        Stage("vllm", "infer.yaml.j2", Path(f"recipes/{name}_vllm.yaml")),
    ]
    return recipe


def load_recipes(path: Path = MATRIX) -> dict[str, Recipe]:
    matrix = load_matrix(path)
    return {name: expand(name, entry, matrix) for name, entry in matrix["recipes"].items()}


def get_recipe(name: str, path: Path = MATRIX) -> Recipe:
    recipes = load_recipes(path)
    if name not in recipes:
        raise RecipeError(f"unknown recipe `{name}`: choose one of {', '.join(recipes)} (see `vslm list`)")
    return recipes[name]


def profile_overrides(recipe: Recipe, stage: Stage, profile: str | None, matrix: dict | None = None,
                      saves_root: str = "saves") -> dict[str, Any]:
    """key=value overrides that turn a shipped recipe into its profile variant (None = as shipped).
    Profile outputs go to <saves_root>/<profile>/<recipe>/ so they never mix with real runs."""
    if not profile:
        return {}
    matrix = matrix or load_matrix()
    if profile not in matrix["profiles"]:
        raise RecipeError(f"unknown profile `{profile}`: choose one of {', '.join(matrix['profiles'])}")
    family = matrix["families"][recipe["family"]]
    out: dict[str, Any] = {"model_name_or_path": family["tiny_model"]}
    prefix = f"{saves_root}/{profile}/{recipe.name}"
    if stage.kind in ("train_pt", "train"):
        out.update(matrix["profiles"][profile])
        out["output_dir"] = stage.output_dir.replace(recipe.saves, prefix)
        if stage.kind == "train" and recipe["pt"]:
            out["adapter_name_or_path"] = f"{prefix}/pt_adapter"
        if stage.kind == "train_pt":
            out.pop("cutoff_len", None)  # pt packs the corpus into blocks of the recipe's cutoff
    else:
        out["adapter_name_or_path"] = recipe["adapter_dir"].replace(recipe.saves, prefix)
        if stage.kind == "merge":
            out["export_dir"] = recipe["merged_dir"].replace(recipe.saves, prefix)
    return out


def format_overrides(overrides: dict[str, Any]) -> list[str]:
    def fmt(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return [f"{key}={fmt(value)}" for key, value in overrides.items()]


def rel_root(path: Path) -> Path:
    return path if not path.is_absolute() else path.relative_to(ROOT)


def saves_root() -> str:
    """Where profile runs write: $VSLM_SAVES (tests point it at a temporary folder), default saves."""
    return os.environ.get("VSLM_SAVES", "saves")

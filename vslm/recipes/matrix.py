"""The recipe matrix (templates/matrix.yaml): every recipe's variables, with defaults applied.

The matrix has a closed schema: every key is known, typed and range-checked before anything is rendered,
and all problems are reported at once, each as `<matrix>: recipes.<name>.<key>: problem — what to write`.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from ..core.errors import RecipeError
from ..core.paths import TEMPLATES, rel

MATRIX = TEMPLATES / "matrix.yaml"


def matrix_path() -> Path:
    """The matrix in use: $VSLM_MATRIX when set (e.g. a copy under test), else templates/matrix.yaml."""
    env = os.environ.get("VSLM_MATRIX")
    return Path(env) if env else MATRIX


# ---- schema ---------------------------------------------------------------------------------------------

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
PATTERN_TEXT = {
    NAME_PATTERN: "lowercase letters, digits and underscores, starting with a letter",
    DATASET_PATTERN: "a dataset name from dataset_info.json (letters, digits, `_`, `-`, `.`; no commas or spaces)",
}
FLASH_ATTN = ("auto", "disabled", "sdpa", "fa2", "fa3")  # LlamaFactory's AttentionFunction (tests/recipes/test_matrix.py keeps them equal)
# Keys a profile may not set: they are derived per recipe (tiny model from its family, outputs under saves/<profile>/).
DERIVED = ("model_name_or_path", "output_dir", "adapter_name_or_path", "export_dir")


def _val_size(value: float) -> float:
    if value >= 1 and not float(value).is_integer():
        raise ValueError("neither a fraction below 1 nor a whole number of rows")
    return value


def _pair(value: Any) -> Any:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise ValueError("not a [value, reason] pair")
    return tuple(value)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveNumber = Annotated[float, Field(gt=0)]
Text = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
DatasetName = Annotated[str, Field(pattern=DATASET_PATTERN)]
DatasetList = Annotated[list[DatasetName], Field(min_length=1)]

# Training variables: required in `defaults:`, optional in a recipe (which then overrides the default).
TRAINING: dict[str, Any] = {
    "seed": Annotated[int, Field(ge=0)],
    "learning_rate": PositiveNumber,
    "num_train_epochs": PositiveNumber,
    "per_device_train_batch_size": PositiveInt,
    "gradient_accumulation_steps": PositiveInt,
    "cutoff_len": PositiveInt,
    "warmup_ratio": Annotated[float, Field(ge=0, le=1)],
    "weight_decay": Annotated[float, Field(ge=0)],
    "val_size": Annotated[float, Field(ge=0), AfterValidator(_val_size)],
    "logging_steps": PositiveInt,
    "save_steps": PositiveInt,
    "max_new_tokens": PositiveInt,
}
# GPU-efficiency switches: plain values in `defaults:`, `[value, "reason"]` pairs under a recipe's `switches:`.
SWITCHES: dict[str, Any] = {
    "bf16": bool,
    "flash_attn": Literal[FLASH_ATTN],
    "enable_liger_kernel": bool,
    "packing": bool,
    "neat_packing": bool,
}
# What a message suggests writing (YAML), by key.
EXAMPLES = {
    "seed": "42", "learning_rate": "1.0e-4", "num_train_epochs": "3", "per_device_train_batch_size": "4",
    "gradient_accumulation_steps": "4", "cutoff_len": "1024",
    "warmup_ratio": "0.1", "weight_decay": "0.01", "val_size": "0.1", "logging_steps": "10", "save_steps": "100",
    "max_new_tokens": "256", "enable_thinking": "false", "bf16": "true", "flash_attn": "sdpa", "enable_liger_kernel": "false",
    "packing": "false", "neat_packing": "false", "lora": "{rank: 16, alpha: 32, dropout: 0.05, target: all}",
    "rank": "16", "alpha": "32", "dropout": "0.05", "target": "all", "title": "<one line saying what the recipe is>",
    "hardware": "<GPU and memory it needs>", "example_question": "<a question from the domain>", "domain": "telecom",
    "family": "qwen2", "model": "Qwen/Qwen2.5-1.5B-Instruct", "template": "qwen", "system": "<the system prompt>",
    "datasets": "[telecom_train]", "eval_set": "telecom_eval", "templates": "[qwen]", "tiny_model": "models/tiny-qwen2",
    "pt": "{datasets: [finance_rules_corpus], num_train_epochs: 3}",
    "switches": '{bf16: [true, "why this setting"]}',
}


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Lora(_Closed):
    rank: PositiveInt
    alpha: PositiveInt
    dropout: Annotated[float, Field(ge=0, lt=1)]
    target: Text


class LoraOverride(_Closed):
    """A recipe's `lora:`; keys it leaves out come from `defaults.lora`."""

    rank: PositiveInt = None  # type: ignore[assignment]
    alpha: PositiveInt = None  # type: ignore[assignment]
    dropout: Annotated[float, Field(ge=0, lt=1)] = None  # type: ignore[assignment]
    target: Text = None  # type: ignore[assignment]


PtStage = create_model("PtStage", __base__=_Closed, datasets=(DatasetList, ...),
                       **{k: (TRAINING[k], None) for k in ("seed", "learning_rate", "num_train_epochs", "per_device_train_batch_size",
                                                           "gradient_accumulation_steps",
                                                           "cutoff_len", "warmup_ratio", "weight_decay", "logging_steps", "save_steps")})
Switches = create_model("Switches", __base__=_Closed,
                        **{k: (Annotated[Optional[tuple[t, Text]], BeforeValidator(_pair)], None) for k, t in SWITCHES.items()})
Defaults = create_model("Defaults", __base__=_Closed, lora=(Lora, ...), enable_thinking=(Optional[bool], None),
                        pt=(Optional[PtStage], None), **{k: (t, ...) for k, t in {**TRAINING, **SWITCHES}.items()})
RecipeEntry = create_model(
    "RecipeEntry", __base__=_Closed,
    title=(Text, ...), hardware=(Text, ...), example_question=(Text, ...), domain=(Name, ...), family=(Text, ...),
    model=(Text, ...), template=(Text, ...), system=(Text, ...), datasets=(DatasetList, ...), eval_set=(DatasetName, ...),
    lora=(LoraOverride, None), switches=(Optional[Switches], None), enable_thinking=(Optional[bool], None), pt=(Optional[PtStage], None),
    **{k: (t, None) for k, t in TRAINING.items()},
)


class Family(_Closed):
    templates: Annotated[list[Text], Field(min_length=1)]
    tiny_model: Text


class Matrix(_Closed):
    defaults: Defaults  # type: ignore[valid-type]
    families: Annotated[dict[str, Family], Field(min_length=1)]
    profiles: dict[str, dict[str, Any]]  # LlamaFactory key=value overrides; checked in _cross_checks and by `vslm validate`
    recipes: Annotated[dict[str, RecipeEntry], Field(min_length=1)]  # type: ignore[valid-type]


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<" and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key `{key}`", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is Union and len([a for a in typing.get_args(tp) if a is not type(None)]) == 1:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys the schema allows in the mapping at `loc`."""
    tp: Any = Matrix
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


TYPE_WORDS = {
    "int_type": "a whole number", "int_from_float": "a whole number", "float_type": "a number", "bool_type": "true or false",
    "string_type": "text", "dict_type": "a mapping", "model_type": "a mapping", "list_type": "a list", "literal_error": "one of",
}


def _problem(error: dict[str, Any]) -> str:
    """One schema error as `key.path: what is wrong — what to write instead`."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    if "switches" in loc[:-1] and len(loc) > loc.index("switches") + 1:
        i = loc.index("switches")
        name, part = loc[i + 1], (loc[i + 2] if len(loc) > i + 2 else None)
        fix = f'write {name}: [{EXAMPLES.get(name, "<value>")}, "why this setting"]'
        where = _where(loc[: i + 2])
        if kind == "extra_forbidden":
            close = difflib.get_close_matches(str(name), list(SWITCHES), n=1)
            return f"{where}: unknown switch — " + (f"did you mean {close[0]}?" if close else f"switches are {', '.join(SWITCHES)}")
        if part == 0:
            expected = f"one of {', '.join(FLASH_ATTN)}" if name == "flash_attn" else TYPE_WORDS.get(kind, "valid")
            return f"{where}: the value {_show(value)} is not {expected} — {fix}"
        if part == 1:
            return f"{where}: the reason must be non-empty text — {fix}"
        return f"{where}: {_show(value)} is not a [value, reason] pair — {fix}"
    key = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    where, example = _where(loc), EXAMPLES.get(key, "<value>")
    if kind == "missing":
        return f"{where}: missing — add {key}: {example}"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        if key in SWITCHES and loc[0] == "recipes":
            return (f'{where}: GPU switches go under `switches:` with a reason — write switches: {{{key}: [{_show(value)}, '
                    f'"why this setting"]}}')
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        return f"{where}: unknown key — " + (f"did you mean {close[0]}?" if close else f"allowed here: {', '.join(allowed)}")
    if value is None and kind.endswith("_type"):
        return f"{where}: empty — write {key}: {example}"
    if kind == "list_type" and isinstance(value, str):
        return f"{where}: the text {_show(value)} is not a list — write {key}: [{value}]"
    if kind == "float_type" and isinstance(value, str):
        try:
            float(value)
            return f"{where}: YAML reads {value} as text — write it with a dot, e.g. {key}: {float(value):.1e}".replace("e-0", "e-")
        except ValueError:
            pass
    if kind == "literal_error":
        return f"{where}: {_show(value)} is not one of {error['ctx']['expected']} — write {key}: {example}"
    if kind in TYPE_WORDS:
        return f"{where}: {_show(value)} is not {TYPE_WORDS[kind]} — write {key}: {example}"
    ctx = error.get("ctx") or {}
    bounds = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
    if kind in bounds:
        words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}[bounds[kind]]
        return f"{where}: {_show(value)} is out of range — it must be {words} {ctx[bounds[kind]]:g}, e.g. {key}: {example}"
    if kind in ("too_short", "string_too_short"):
        return f"{where}: must not be empty — write {key}: {example}"
    if kind == "string_pattern_mismatch":
        return f"{where}: {_show(value)} must be {PATTERN_TEXT.get(ctx.get('pattern'), ctx.get('pattern'))}"
    msg = error["msg"].removeprefix("Value error, ")
    return f"{where}: {_show(value)} is {msg} — write {key}: {example}"


def _cross_checks(data: dict[str, Any]) -> list[str]:
    """What the per-key schema cannot see: names that become paths, families and templates, profile keys."""
    problems = []
    families = data.get("families") if isinstance(data.get("families"), dict) else {}
    for name, entry in (data.get("recipes") or {}).items() if isinstance(data.get("recipes"), dict) else ():
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            problems.append(f"recipes.{name}: a recipe name must be {PATTERN_TEXT[NAME_PATTERN]} (it becomes recipes/<name>.yaml) — rename it")
        if not isinstance(entry, dict) or not isinstance(entry.get("family"), str):
            continue
        family = entry["family"]
        if family not in families:
            close = difflib.get_close_matches(family, list(families), n=1)
            hint = f"did you mean {close[0]}?" if close else f"choose one of {', '.join(families)} (defined under `families:`)"
            problems.append(f"recipes.{name}.family: unknown family `{family}` — {hint}")
        elif isinstance(entry.get("template"), str) and isinstance(families[family], dict):
            allowed = families[family].get("templates")
            if isinstance(allowed, list) and entry["template"] not in allowed:
                problems.append(f"recipes.{name}.template: `{entry['template']}` is not a chat template of family {family} — "
                                f"write template: {allowed[0]}" + (f" (or one of {', '.join(map(str, allowed[1:]))})" if len(allowed) > 1 else ""))
    for name, profile in (data.get("profiles") or {}).items() if isinstance(data.get("profiles"), dict) else ():
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            problems.append(f"profiles.{name}: a profile name must be {PATTERN_TEXT[NAME_PATTERN]} (it becomes saves/<profile>/) — rename it")
        if not isinstance(profile, dict):
            continue
        for key, value in profile.items():
            if key in DERIVED:
                problems.append(f"profiles.{name}.{key}: set per recipe by the profile (families.<family>.tiny_model, "
                                f"saves/{name}/<recipe>/) — remove it")
            elif isinstance(value, (dict, list)):
                problems.append(f"profiles.{name}.{key}: a profile holds key=value overrides, so {key} needs a single "
                                f"value (text, number, true/false), not {'a mapping' if isinstance(value, dict) else 'a list'}")
    return problems


_READ: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}  # path -> ((mtime_ns, size), checked matrix)


def load_matrix(path: Path | None = None) -> dict[str, Any]:
    """The matrix as written, after the schema check (every problem reported at once). Read and checked once per
    version of the file (its modification time and size); every caller gets its own copy."""
    path = path or matrix_path()
    shown = rel(path) if path.is_absolute() else path
    if not path.is_file():
        raise RecipeError(f"{shown}: recipe matrix not found" + (" (check $VSLM_MATRIX)" if os.environ.get("VSLM_MATRIX") else ""))
    stat = path.stat()
    version, key = (stat.st_mtime_ns, stat.st_size), path.resolve()
    if key not in _READ or _READ[key][0] != version:
        _READ[key] = (version, _read_matrix(path, shown))
    return copy.deepcopy(_READ[key][1])


def _read_matrix(path: Path, shown: Path | str) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start}) — save it as UTF-8") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        if problem.startswith("duplicate key"):
            raise RecipeError(f"{shown}{line}: {problem} — each key may appear once in a mapping; keep one") from None
        raise RecipeError(f"{shown}{line}: not valid YAML ({problem}) — fix that line") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{shown}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{shown}: expected a mapping with defaults:, families:, profiles: and recipes:")
    try:
        Matrix.model_validate(data)
        problems = []
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors(include_url=False)]
    problems += _cross_checks(data)
    problems = [f"{shown}: {p}" for p in dict.fromkeys(problems)]
    if len(problems) == 1:
        raise RecipeError(problems[0])
    if problems:
        raise RecipeError(f"{shown}: {len(problems)} problems (all listed):\n  " + "\n  ".join(problems))
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


def load_recipes(path: Path | None = None) -> dict[str, Recipe]:
    matrix = load_matrix(path)
    return {name: expand(name, entry, matrix) for name, entry in matrix["recipes"].items()}


def get_recipe(name: str, path: Path | None = None) -> Recipe:
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
    full = matrix["profiles"][profile].get("finetuning_type") == "full"
    if stage.kind in ("train_pt", "train"):
        out.update(matrix["profiles"][profile])
        out["output_dir"] = stage.output_dir.replace(recipe.saves, prefix)
        if full:  # a whole model, not an adapter: saves/<profile>/<recipe>/full (and pt_full for a pt stage)
            out["output_dir"] = out["output_dir"].replace("adapter", "full")
        if stage.kind == "train" and recipe["pt"]:
            if full:
                out["model_name_or_path"] = f"{prefix}/pt_full"
            else:
                out["adapter_name_or_path"] = f"{prefix}/pt_adapter"
        if stage.kind == "train_pt":
            out.pop("cutoff_len", None)  # pt packs the corpus into blocks of the recipe's cutoff
    elif full:  # the trained folder is the fine-tuned model: nothing to merge, served and exported as it is
        out["model_name_or_path"] = f"{prefix}/full"
        out["adapter_name_or_path"] = None
        if stage.kind == "merge":
            out["export_dir"] = f"{prefix}/full"
    else:
        out["adapter_name_or_path"] = recipe["adapter_dir"].replace(recipe.saves, prefix)
        if stage.kind == "merge":
            out["export_dir"] = recipe["merged_dir"].replace(recipe.saves, prefix)
    return out


def format_overrides(overrides: dict[str, Any]) -> list[str]:
    def fmt(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return "null"
        return str(value)

    return [f"{key}={fmt(value)}" for key, value in overrides.items()]


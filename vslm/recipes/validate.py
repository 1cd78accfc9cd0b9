"""`vslm validate`: every recipe through LlamaFactory's own argument parser plus the repository's rules.

All problems of all files are collected and reported together, each as `file: key: problem — fix`.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .matrix import expand, load_matrix, profile_overrides
from .resolve import dataset_names
from ..core.paths import ROOT, rel as _rel
from ..data.registry import load_registry


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
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.7)
        fix = f"did you mean `{close[0]}`?" if close else "remove it (LlamaFactory rejects unknown keys)"
        problems.append(f"{key}: not a LlamaFactory {kind} argument — {fix}")
    return problems


@functools.cache
def field_types(kind: str) -> dict[str, tuple[Any, Any, str]]:
    """key -> (declared type, default, dataclass) for every argument LlamaFactory parses for this kind."""
    out: dict[str, tuple[Any, Any, str]] = {}
    for cls in parser_classes(kind):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            out.setdefault(f.name, (hints[f.name], default, cls.__name__))
    return out


def _accepts(tp: Any, value: Any) -> bool | None:
    """Does `value` (as YAML gives it) have the declared type? None when the type cannot be judged."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        verdicts = [_accepts(a, value) for a in args]
        return True if True in verdicts else (None if None in verdicts else False)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    if tp is list or origin is list:
        return isinstance(value, list) and (not args or all(_accepts(args[0], v) is not False for v in value))
    return None


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        words = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(words)) + (" (or null)" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "a mapping", list: "a list"}
    return words.get(tp) or words.get(origin) or getattr(tp, "__name__", str(tp))


def _yaml(value: Any) -> str:
    """A value written as YAML reads it back (1.0e-4, not 1e-4, which YAML 1.1 reads as text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float) and value and abs(value) < 1e-3:
        return re.sub(r"e([-+])0*(\d)", r"e\1\2", f"{value:.1e}")
    return str(value) if not isinstance(value, str) else f'"{value}"'


# Counts, sizes and rates where zero or a negative value means nothing (LlamaFactory/transformers accept them silently).
POSITIVE = ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
            "gradient_accumulation_steps", "cutoff_len", "lora_rank", "lora_alpha", "save_steps", "eval_steps",
            "logging_steps", "max_new_tokens", "max_length", "num_beams", "vllm_maxlen", "vllm_max_lora_rank", "export_size",
            "preprocessing_num_workers", "preprocessing_batch_size", "max_samples", "save_total_limit", "temperature")
NON_NEGATIVE = ("seed", "weight_decay", "warmup_steps", "max_grad_norm", "dataloader_num_workers", "val_size", "top_k")
RANGES: dict[str, tuple[Any, str]] = {
    **{k: (lambda v: v > 0, "greater than 0") for k in POSITIVE},
    **{k: (lambda v: v >= 0, "0 or more") for k in NON_NEGATIVE},
    "warmup_ratio": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    "lora_dropout": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "top_p": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "vllm_gpu_util": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "max_steps": (lambda v: v > 0 or v == -1, "greater than 0 (or -1: train by epochs)"),
}


def value_problems(kind: str, config: dict[str, Any]) -> dict[str, str]:
    """key -> `key: bad value — expected type/range` for every value LlamaFactory's dataclasses would not take as meant.
    HfArgumentParser.parse_dict does not check types, so `learning_rate: abc` or `bf16: maybe` would pass it."""
    known = field_types(kind)
    problems = {}
    for key, value in config.items():
        if key not in known:
            continue
        tp, default, owner = known[key]
        takes = f"LlamaFactory's {owner}.{key} takes {_describe(tp)}"
        example = f", e.g. {key}: {_yaml(default)}" if default is not None and _accepts(tp, default) else ""
        if _accepts(tp, value) is False:
            problems[key] = f"{key}: {_yaml(value)} is not {_describe(tp)} — {takes}{example}"
            if isinstance(value, str) and _accepts(tp, 0.5):
                try:
                    problems[key] = f"{key}: {_yaml(value)} is text, not a number — write {key}: {_yaml(float(value))} without quotes ({takes})"
                except ValueError:
                    pass
        elif key in RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
            check, words = RANGES[key]
            if not check(value):
                problems[key] = f"{key}: {_yaml(value)} is out of range — it must be {words}{example}"
            elif key == "val_size" and value >= 1 and not float(value).is_integer():
                problems[key] = f"{key}: {_yaml(value)} is neither a fraction below 1 nor a whole number of rows, e.g. val_size: 0.1"
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


def load_like_llamafactory(path: Path) -> Any:
    """A recipe file as `llamafactory-cli` reads it (OmegaConf: `1e-4` is a number there, text to PyYAML)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path))


def as_cli_value(kind: str, key: str, value: Any) -> Any:
    """A `key=value` override as `llamafactory-cli` would type it (OmegaConf.from_cli), where the declared
    type does not take text: `learning_rate=1e-4` is a number to LlamaFactory."""
    tp = field_types(kind).get(key, (None,))[0]
    if not isinstance(value, str) or tp is None or _accepts(tp, value) is not False:
        return value
    from omegaconf import OmegaConf

    try:
        typed = OmegaConf.to_container(OmegaConf.from_cli([f"v={value}"]))["v"]
    except Exception:  # not parseable as a CLI value: leave it to the type check
        return value
    return typed if _accepts(tp, typed) else value


def parse_with_llamafactory(kind: str, config: dict[str, Any]) -> str | None:
    """Run LlamaFactory's HfArgumentParser on the config; return its error message, if any."""
    from transformers import HfArgumentParser

    config = {k: as_cli_value(kind, k, v) for k, v in config.items()}
    bad = value_problems(kind, config)
    if bad:
        return "; ".join(bad.values())
    parser = HfArgumentParser(parser_classes(kind))
    cfg = dict(config)
    if kind == "train":
        import torch

        if not torch.cuda.is_available():
            cfg["use_cpu"] = True  # bf16 is valid for the GPU the recipe targets; parse as if on one
        cfg["output_dir"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "vslm-validate")
        cfg.pop("ddp_backend", None)  # needs the process group torchrun starts; its value was type-checked above
    try:
        parser.parse_dict(cfg, allow_extra_keys=False)
    except Exception as exc:  # LlamaFactory/transformers raise ValueError/TypeError/... from __post_init__
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def argument_problems(kind: str, config: dict[str, Any]) -> list[str]:
    """Unknown keys, ill-typed or out-of-range values, then LlamaFactory's own parser on the rest."""
    problems = unknown_key_problems(kind, config)
    bad = value_problems(kind, config)
    problems += bad.values()
    known = known_keys(kind)
    if kind == "train" and isinstance(config.get("deepspeed"), str) and "deepspeed" not in bad:
        training = {k: as_cli_value(kind, k, config[k]) for k in DS_TRAINING_KEYS if k in config and k not in bad}
        ds_problems = deepspeed_config_problems(ROOT / config["deepspeed"], training)
        problems += [f"deepspeed: {p}" for p in ds_problems]
        if ds_problems:  # the parser would only fail on the same file again
            bad["deepspeed"] = ds_problems[0]
    error = parse_with_llamafactory(kind, {k: v for k, v in config.items() if k in known and k not in bad})
    if error:
        problems.append(f"(LlamaFactory parser) {error}")
    return problems


def shown(path: Path) -> str | Path:
    """A file as messages name it: relative to the repository when it is an absolute path inside it."""
    return _rel(path) if path.is_absolute() else path


def validate_file(path: Path, matrix: dict[str, Any], registry: dict[str, Any], rank_of: dict[str, int],
                  profiles: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Every problem of one file; `profiles` (name -> key=value overrides) are checked on top of it as well."""
    rel = shown(path)
    try:
        config = load_like_llamafactory(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return [f"{rel}:{mark.line + 1 if mark else '?'}: not valid YAML ({exc.problem or exc.context}) — fix that line"]
    except UnicodeDecodeError as exc:
        return [f"{rel}: not UTF-8 text ({exc.reason} at byte {exc.start}) — save it as UTF-8"]
    except Exception as exc:  # OSError, omegaconf errors
        return [f"{rel}: cannot be read as YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"]
    if not isinstance(config, dict):
        return [f"{rel}: expected a mapping of LlamaFactory keys"]
    kind = _kind_of(config)
    shipped = argument_problems(kind, config)
    problems = [f"{rel}: {p}" for p in shipped]
    for profile, overrides in (profiles or {}).items():
        problems += [f"{rel} with the {profile} profile's overrides: {p}"
                     for p in argument_problems(kind, {**config, **overrides}) if p not in shipped]
    model, template = str(config.get("model_name_or_path", "")), config.get("template")
    family = _family_of(model, matrix["families"])
    if template and family in matrix["families"]:
        allowed = matrix["families"][family]["templates"]
        if template not in allowed:
            problems.append(f"{rel}: template: `{template}` does not match the {family} model `{model}` — use template: {allowed[0]}")
    if family == "qwen3" and config.get("stage", "sft") == "sft" and config.get("enable_thinking", True) and template == "qwen3":
        problems.append(f"{rel}: enable_thinking: Qwen3 trained on non-reasoning data needs `enable_thinking: false`")
    for name in dataset_names(config):
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
        if isinstance(served, int) and served < rank_of[stem]:  # a non-number is reported by the type check
            problems.append(f"{rel}: vllm_max_lora_rank: {served} < lora_rank {rank_of[stem]} of recipes/{stem}.yaml — set it to {rank_of[stem]}")
    return problems


def recipe_files() -> list[Path]:
    return sorted(p for p in (ROOT / "recipes").rglob("*.yaml"))


def validate_all(files: list[Path] | None = None) -> list[str]:
    """Every problem of every recipe file (default: all under recipes/, DeepSpeed JSON configs included), each profile
    variant included."""
    matrix = load_matrix()
    registry = load_registry()
    rank_of, profiles_of = {}, {}
    for name, entry in matrix["recipes"].items():
        recipe = expand(name, entry, matrix)
        rank_of[recipe.name] = recipe["lora"]["rank"]
        for stage in recipe.stages:
            profiles_of[(ROOT / stage.path).resolve()] = {p: profile_overrides(recipe, stage, p, matrix) for p in matrix["profiles"]}
    problems = []
    for path in files or [*recipe_files(), *deepspeed_files()]:
        path = path.resolve()
        if path.suffix == ".json":
            problems += deepspeed_config_problems(path)
        else:
            problems += validate_file(path, matrix, registry, rank_of, profiles_of.get(path))
    return problems


# --- DeepSpeed configs (recipes/deepspeed/*.json) ------------------------------------------------------------------

DS_STAGE_IN_NAME = re.compile(r"(?:^|[_-])z(?:ero)?[_-]?([0-3])(?:[_-]|$)")
# pydantic config class -> the top-level key it parses, so an error names the key a user writes
DS_SECTIONS = {"DeepSpeedZeroConfig": "zero_optimization", "DeepSpeedFP16Config": "fp16", "DeepSpeedBF16Config": "bf16",
               "DeepSpeedZeroOffloadParamConfig": "zero_optimization.offload_param",
               "DeepSpeedZeroOffloadOptimizerConfig": "zero_optimization.offload_optimizer"}


# TrainingArguments a DeepSpeed "auto" value is filled from (and a fixed value must agree with)
DS_TRAINING_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "max_grad_norm",
                    "weight_decay", "bf16", "fp16")


def deepspeed_files() -> list[Path]:
    return sorted((ROOT / "recipes" / "deepspeed").glob("*.json"))


def expected_zero_stage(path: Path) -> int | None:
    """The ZeRO stage a config's file name promises (ds_z2.json -> 2), None when the name does not say."""
    match = DS_STAGE_IN_NAME.search(path.stem.lower())
    return int(match.group(1)) if match else None


class _RecordingDict(dict):
    """A dict that remembers which keys were looked up: the top-level keys DeepSpeed's parser reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key, *default):
        self.asked.add(key)
        return super().get(key, *default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


@functools.cache
def _quiet_deepspeed() -> None:
    """DeepSpeed logs its accelerator detection and config to stdout at INFO; a check prints only its verdict."""
    import logging

    logging.getLogger("DeepSpeed").addFilter(lambda record: record.levelno >= logging.ERROR)


@functools.cache
def _deepspeed_keys_known() -> frozenset[str]:
    """The top-level keys DeepSpeedConfig looks up when it parses a config, plus DeepSpeed's named key constants."""
    import deepspeed.runtime.constants as constants
    from deepspeed.runtime.config import DeepSpeedConfig

    recorded = _RecordingDict({"train_batch_size": 1, "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1})
    DeepSpeedConfig(recorded)
    named = {v for k, v in vars(constants).items() if k.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z][a-z0-9_]*", v)}
    return frozenset(recorded.asked | named | {"zero_optimization", "activation_checkpointing", "flops_profiler", "aio", "autotuning", "nebula"})


def _section_fields(title: str) -> set[str]:
    """Field names and aliases of DeepSpeed's pydantic config class `title` (empty when it is not one we know)."""
    from deepspeed.runtime.zero import config, offload_config

    cls = getattr(config, title, None) or getattr(offload_config, title, None)
    fields = getattr(cls, "model_fields", {})
    return {*fields, *(f.alias for f in fields.values() if f.alias)}


def _deepspeed_error(rel: Any, exc: Exception) -> str:
    import pydantic

    if isinstance(exc, pydantic.ValidationError) and exc.errors():
        err = exc.errors()[0]
        key = ".".join([DS_SECTIONS.get(exc.title, exc.title), *map(str, err["loc"])])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), _section_fields(exc.title), n=1, cutoff=0.6)
            fix = f"did you mean `{close[0]}`?" if close else "remove it or fix its spelling"
            return f"{rel}: {key}: not a DeepSpeed key here (DeepSpeed rejects it) — {fix}"
        return f"{rel}: {key}: {err['input']!r} rejected by DeepSpeed ({err['msg']}) — fix that value"
    text = " ".join(line.strip() for line in str(exc).strip().splitlines())
    return f"{rel}: rejected by the HF/DeepSpeed integration: {text[:300] or type(exc).__name__}"


def deepspeed_config_problems(path: Path, training: dict[str, Any] | None = None,
                              expected_stage: int | None = None) -> list[str]:
    """Every problem of a DeepSpeed JSON config, checked offline the way the HF Trainer loads it: TrainingArguments
    (the recipe's `training` arguments, if given: then a fixed value that contradicts them is a problem too) fills
    the "auto" values, trainer_config_finalize completes them, DeepSpeedConfig parses the result. DeepSpeed ignores
    unknown keys (a misspelled `zero_optimization` key inside means stage 0), so the ZeRO stage is asserted against
    `expected_stage` (default: the one the file name says, ds_z3.json -> 3) and misspelled top-level keys are named."""
    import json
    import tempfile

    rel = shown(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return [f"{rel}:{exc.lineno}: not valid JSON ({exc.msg}) — fix that line"]
    except UnicodeDecodeError as exc:
        return [f"{rel}: not UTF-8 text ({exc.reason} at byte {exc.start}) — save it as UTF-8"]
    except OSError as exc:
        return [f"{rel}: cannot be read ({exc.strerror or exc}) — check the deepspeed= path"]
    if not isinstance(raw, dict):
        return [f"{rel}: expected a JSON object of DeepSpeed keys"]
    if expected_stage is None:
        expected_stage = expected_zero_stage(path)

    _quiet_deepspeed()
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments

    problems, known = [], _deepspeed_keys_known()
    for key in (k for k in raw if k not in known and not str(k).startswith("_")):
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
        if close:
            problems.append(f"{rel}: {key}: not a DeepSpeed key, DeepSpeed ignores it — did you mean `{close[0]}`?")
    if "zero_optimization" not in raw:  # accelerate refuses such a config; a misspelling is named above
        if not any("did you mean `zero_optimization`" in p for p in problems):
            problems.append(f"{rel}: zero_optimization: missing — add \"zero_optimization\": {{\"stage\": {expected_stage if expected_stage is not None else 2}}}")
        return problems
    args = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, **(training or {})}
    try:
        with tempfile.TemporaryDirectory() as out:
            targs = TrainingArguments(output_dir=out, deepspeed=json.loads(json.dumps(raw)), use_cpu=True, report_to="none", **args)
            hf_config = targs.hf_deepspeed_config
            if training is None:
                hf_config.mismatches.clear()  # no recipe to compare fixed values with
            model = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=256))  # fills the hidden-size "auto"s
            hf_config.trainer_config_finalize(targs, model, num_training_steps=100)
            parsed = DeepSpeedConfig(hf_config.config)
    except Exception as exc:  # ValueError/pydantic.ValidationError/AssertionError from transformers, accelerate, DeepSpeed
        return problems + [_deepspeed_error(rel, exc)]
    stage = int(parsed.zero_optimization_stage)
    if expected_stage is not None and stage != expected_stage:  # a stage DeepSpeed defaulted (0) included
        problems.append(f"{rel}: zero_optimization.stage: DeepSpeed reads ZeRO stage {stage}, the file name says "
                        f"{expected_stage} — set \"stage\": {expected_stage}")
    return problems


# --- GPU packages the recipes' switches need (`make install-gpu`) --------------------------------------------------

# switch -> (is it on?, the distribution it imports). Pinned versions: scripts/install_gpu.sh.
GPU_SWITCHES: dict[str, tuple[Any, str]] = {
    "flash_attn": (lambda v: v == "fa2", "flash-attn"),
    "enable_liger_kernel": (lambda v: v is True, "liger-kernel"),
    "deepspeed": (lambda v: bool(v), "deepspeed"),
}


def _installed(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def gpu_package_problems(config: dict[str, Any], installed=_installed) -> list[str]:
    """`key: value needs package — install` for every switch that is on while the package it needs is absent
    (LlamaFactory would fail inside the run, or, for flash_attn: fa2, quietly fall back to another attention)."""
    problems = []
    for key, (is_on, package) in GPU_SWITCHES.items():
        if key in config and is_on(config[key]) and not installed(package):
            value = config[key] if isinstance(config[key], str) else _yaml(config[key])
            problems.append(f"{key}: {value} needs the `{package}` package, which is not installed "
                            f"— run `make install-gpu` (a CUDA machine) or turn the switch off (the tiny profile does)")
    return problems

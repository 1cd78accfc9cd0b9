"""The one answer to "what does stage S of recipe R run with under profile P, and where does it write?".

`resolve(recipe, profile, extra)` returns every stage's recipe file, key=value overrides (the profile's, then the
caller's, then the ZeRO-3 rule) and effective config (the file as LlamaFactory sees it with the overrides after it),
and every path a command writes — adapter, merged model, eval report, serve log, RAG index, probe — under one saves
root ($VSLM_SAVES, default `saves`). train, merge, serve, eval, probe, demo, run records, LlamaBoard presets, GGUF
export and the benchmarks all ask here instead of recomputing it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import RecipeError
from ..core.paths import ROOT
from .matrix import Recipe, Stage, format_overrides, load_matrix, profile_overrides

# vLLM on a CPU (the tiny demo, and any machine without a GPU): fp32 (its CPU backend's safe dtype), the model worker
# inside the engine process and no compiled kernels (less memory and a faster start: benchmarks/bench_vllm_rss.py);
# on GPUs vLLM takes the model's own dtype, process layout and compilation. The context length and LoRA rank always
# come from the recipe's _vllm.yaml stage.
CPU_DTYPE = "float32"
DEMO_PROFILE = "tiny_full"  # the main job's profile (templates/matrix.yaml): a full fine-tune the taught facts provably reach


def saves_root() -> str:
    """Where profile runs and every command's outputs go: $VSLM_SAVES (tests point it at a temporary folder), default saves."""
    return os.environ.get("VSLM_SAVES", "saves")


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


def effective_config(stage: Stage, overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe file as LlamaFactory sees it with the overrides after it."""
    return {**yaml.safe_load((ROOT / stage.path).read_text(encoding="utf-8")), **overrides}


def dataset_names(config: dict[str, Any]) -> list[str]:
    """The registered dataset names of a config's comma-separated `dataset:` (LlamaFactory's spelling)."""
    return [d.strip() for d in str(config.get("dataset", "") or "").split(",") if d.strip()]


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


def native_cpu_bf16() -> bool:
    """The CPU computes in bf16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it, slower than fp32."""
    import torch

    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def bf16_on_native_cpu(overrides: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A profile's full fine-tune on the CPU (use_cpu, finetuning_type full, bf16 false) trains with bf16 autocast
    where the CPU has bf16 natively: LlamaFactory keeps every trainable weight in fp32, so only the matmuls change —
    1.3-1.5x faster for the tiny model at the same loss (benchmarks/bench_tiny.py --full). A LoRA profile stays fp32:
    there LlamaFactory would also load the frozen base in bf16. The caller's bf16=... wins."""
    wanted = overrides.get("use_cpu") is True and overrides.get("finetuning_type") == "full" and overrides.get("bf16") is False
    if wanted and "bf16" not in extra and native_cpu_bf16():
        return {**overrides, "bf16": True}
    return overrides


def stage_overrides(recipe: Recipe, stage: Stage, profile: str | None, extra: dict[str, Any] | None,
                    matrix: dict[str, Any] | None = None) -> dict[str, Any]:
    """The key=value overrides a stage runs with: its profile's, then the caller's (see zero3_without_use_cpu and
    bf16_on_native_cpu)."""
    overrides = {**profile_overrides(recipe, stage, profile, matrix or load_matrix(), saves_root()), **(extra or {})}
    return bf16_on_native_cpu(zero3_without_use_cpu(stage, overrides, extra or {}), extra or {})


@dataclass
class StageRun:
    """One stage as it runs: `llamafactory-cli <verb> <recipe_file> <overrides...>`."""

    stage: Stage
    overrides: dict[str, Any]

    @property
    def recipe_file(self) -> Path:
        return self.stage.path

    @cached_property
    def config(self) -> dict[str, Any]:
        """The effective config: the recipe file with the overrides after it."""
        return effective_config(self.stage, self.overrides)

    @property
    def output(self) -> str | None:
        """Where the stage writes (output_dir for training, export_dir for merge), relative to the repository root."""
        return self.config.get("output_dir") or self.config.get("export_dir")

    def argv(self) -> list[str]:
        """The llamafactory-cli arguments after the verb."""
        return [str(self.stage.path), *format_overrides(self.overrides)]


@dataclass(frozen=True)
class ServeSettings:
    """How vLLM serves a recipe: from its _vllm.yaml stage (vllm_maxlen, vllm_max_lora_rank); on a CPU in fp32, with
    the model worker in the engine process (VLLM_ENABLE_V1_MULTIPROCESSING=0: one process and one torch fewer) and
    eager (--enforce-eager: no inductor compile at start-up)."""

    max_model_len: int
    max_lora_rank: int
    dtype: str | None  # None: the model's own dtype (vLLM's default)
    worker_in_engine: bool = False
    enforce_eager: bool = False

    @classmethod
    def cpu(cls, max_model_len: int, max_lora_rank: int) -> ServeSettings:
        return cls(max_model_len, max_lora_rank, CPU_DTYPE, worker_in_engine=True, enforce_eager=True)


@dataclass
class Resolved:
    """Everything a recipe under a profile runs with and writes; paths are relative to the repository root unless
    they are Path objects (absolute, under ROOT)."""

    recipe: Recipe
    profile: str | None
    extra: dict[str, Any]
    saves: str
    matrix: dict[str, Any] = field(repr=False)
    _stages: dict[str, StageRun] = field(default_factory=dict, repr=False)

    def stage(self, kind: str) -> StageRun:
        """One stage (train_pt, train, merge, infer, vllm) with its overrides; computed once."""
        if kind not in self._stages:
            stage = self.recipe.stage(kind)
            extra = self.extra if kind in ("train_pt", "train", "merge") else {}
            self._stages[kind] = StageRun(stage, stage_overrides(self.recipe, stage, self.profile, extra, self.matrix))
        return self._stages[kind]

    @property
    def train_stages(self) -> list[StageRun]:
        return [self.stage(s.kind) for s in self.recipe.train_stages]

    @property
    def full_finetune(self) -> bool:
        """The run fine-tunes the whole model (finetuning_type: full, the tiny_full profile): there is no adapter, the
        trained folder is the fine-tuned model (merged_dir), and vLLM serves it on its own, beside a base server."""
        return self.stage("train").config.get("finetuning_type") == "full"

    @property
    def base_model(self) -> str:
        return self.tiny_model if self.profile else self.recipe["model"]

    @property
    def adapter_dir(self) -> str | None:
        """The trained LoRA adapter; None for a full fine-tune."""
        if self.full_finetune:
            return None
        return self.stage("infer").overrides.get("adapter_name_or_path", self.recipe["adapter_dir"])

    @property
    def trained_dir(self) -> Path:
        """What the last training stage wrote: the adapter, or the whole model of a full fine-tune."""
        return ROOT / self.stage("train").output

    @property
    def merged_dir(self) -> str:
        return self.stage("merge").overrides.get("export_dir", self.recipe["merged_dir"])

    @property
    def tiny_model(self) -> str:
        return self.matrix["families"][self.recipe["family"]]["tiny_model"]

    @property
    def run_dir(self) -> Path:
        """saves/[<profile>/]<recipe>: a run's own folder under the saves root."""
        return ROOT / self.saves / (self.profile or "") / self.recipe.name

    @property
    def eval_dir(self) -> Path:
        """The demo's before/after evaluation and report."""
        return self.run_dir / "eval"

    @property
    def report_json(self) -> Path:
        return self.eval_dir / "report.json"

    @property
    def rag_dir(self) -> Path:
        return self.run_dir / "rag"

    @property
    def serve_log(self) -> Path:
        return ROOT / self.saves / "serve" / f"{self.recipe.name}.log"

    def eval_file(self, model: str, rag: bool = False) -> Path:
        """`vslm eval`'s output for one served model."""
        return ROOT / self.saves / "eval" / self.recipe.name / f"{model}{'-rag' if rag else ''}.json"

    @property
    def probe_dir(self) -> Path:
        return ROOT / self.saves / "probe" / self.recipe.name

    def serving(self) -> ServeSettings:
        config = self.stage("vllm").config
        max_model_len, max_lora_rank = int(config["vllm_maxlen"]), int(config["vllm_max_lora_rank"])
        if accelerator_count():
            return ServeSettings(max_model_len, max_lora_rank, dtype=None)
        return ServeSettings.cpu(max_model_len, max_lora_rank)


def resolve(recipe: Recipe, profile: str | None = None, extra: dict[str, Any] | None = None,
            matrix: dict[str, Any] | None = None) -> Resolved:
    """What `recipe` runs with under `profile` (None = as shipped) and the caller's key=value `extra` overrides
    (training and merge stages); the matrix is read once."""
    matrix = matrix or load_matrix()
    if profile and profile not in matrix["profiles"]:
        raise RecipeError(f"unknown profile `{profile}`: choose one of {', '.join(matrix['profiles'])}")
    return Resolved(recipe, profile, dict(extra or {}), saves_root(), matrix)

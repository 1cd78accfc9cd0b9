"""Shared helpers for the benchmarks (not a test module, not part of the `vslm` package).

Token lengths come from LlamaFactory's own data pipeline (`llamafactory.data.get_dataset`: the same converter,
chat template, label masking, truncation and — for packing — the same greedy knapsack over the same
`preprocessing_num_workers` shards) run in-process with the real Qwen tokenizer from
`vslm.models.tokenizer.build_qwen_tokenizer`. No model weights are needed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from vslm.core.paths import ROOT

RESULTS = ROOT / "benchmarks" / "results"

PAD_TO_MULTIPLE_OF = 8  # llamafactory/train/sft/workflow.py: SFTDataCollatorWith4DAttentionMask(pad_to_multiple_of=8)


def train_then_evaluate(saves: Path, recipe: str, overrides: list[str]) -> None:
    """The main job on one recipe with `key=value` overrides: `vslm train <recipe> --profile tiny_full <overrides>`, then
    `vslm demo --recipe <recipe> --skip-train` (serve, evaluate, report), both writing under $VSLM_SAVES=saves."""
    from vslm.recipes.resolve import DEMO_PROFILE

    env = {**os.environ, "VSLM_SAVES": str(saves)}
    vslm = [sys.executable, "-m", "vslm"]
    for cmd in ([*vslm, "train", recipe, "--profile", DEMO_PROFILE, *overrides], [*vslm, "demo", "--recipe", recipe, "--skip-train"]):
        print("$ " + " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def main_job_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The options of a benchmark that runs the main job once per setting (train_then_evaluate) and collects the runs:
    --reuse (runs already made), --work (where new runs go), --out (benchmarks/results/<name>.json) and --warm-up
    (train on the recipe's tiny model warmed up with other settings: warm_up_base)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reuse", type=Path, nargs="*", default=[], help="$VSLM_SAVES folders of runs already made")
    ap.add_argument("--work", type=Path, default=ROOT / "saves" / f"bench-{name}")
    ap.add_argument("--out", type=Path, default=RESULTS / f"{name}.json")
    ap.add_argument("--warm-up", default="", help="space-separated key=value overrides of the tiny model's warm-up "
                    "(vslm.models.tiny.warm_up_settings): the new runs train on that model instead of the recipe's tiny model")
    ap.add_argument("--size", default="", help="space-separated key=value overrides of the tiny model's network "
                    "(vslm.models.tiny.SPECS[name]['config'], e.g. num_hidden_layers=8): the new runs train on that model, "
                    "warmed up as shipped (or with --warm-up)")
    return ap


WARM_UP_RECORD = "vslm_warm_up.json"


def key_values(text: str) -> dict[str, Any]:
    """`key=value ...` as a dict, each value read as YAML."""
    return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in text.split())}


def settings_text(settings: dict[str, Any]) -> str:
    """A dict as `key=value ...` (the reverse of key_values)."""
    return " ".join(f"{k}={v}" for k, v in settings.items())


def warm_up_base(args: argparse.Namespace, recipe: str) -> list[str]:
    """The training override for --warm-up and --size (building the recipe's tiny model that way first), or none."""
    if not (args.warm_up or args.size):
        return []
    from vslm.recipes.matrix import get_recipe
    from vslm.recipes.resolve import DEMO_PROFILE, resolve

    name = Path(resolve(get_recipe(recipe), DEMO_PROFILE).tiny_model).name
    variant = build_warm_up_variant(args.work, name, key_values(args.warm_up), key_values(args.size))
    return [f"model_name_or_path={variant}"]


def folder_name(settings: str) -> str:
    """A folder name for a run's `key=value ...` settings."""
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", settings.strip())


def build_warm_up_variant(work: Path, name: str, overrides: dict, network: dict | None = None) -> Path:
    """Tiny model `name` from a seeded init (of another size with `network`), warmed up with `overrides`; reused when
    already built with them. Its folder records both, the parameter count and the warm-up's final training loss
    (WARM_UP_RECORD)."""
    from vslm.models import tiny

    network = network or {}
    folder = settings_text(overrides)
    if network:
        folder = settings_text(network) + (f" warm-up {folder}" if folder else "")
    out = work / (f"{name}-{'size' if network else 'warm-up'}-" + folder_name(folder))
    if (out / WARM_UP_RECORD).is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    init = out.with_name(out.name + "-init")
    tiny._init_model(name, tiny.tiny_tokenizer(name), init, network)
    tiny._warm_up(name, init, out, overrides)
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    results = json.loads((out / "all_results.json").read_text(encoding="utf-8"))
    record = {"overrides": overrides, "network": network, "parameters": parameter_count(out),
              "final_training_loss": losses[-1], "train_runtime_s": round(results["train_runtime"], 1)}
    (out / WARM_UP_RECORD).write_text(json.dumps(record) + "\n")
    return out


def parameter_count(model_dir: Path) -> int:
    """Parameters stored in model_dir/model.safetensors (a tied output layer is stored once)."""
    from safetensors.torch import load_file

    return sum(tensor.numel() for tensor in load_file(model_dir / "model.safetensors").values())


def base_model_of(run: SimpleNamespace) -> dict[str, Any]:
    """What a collected run trained from: its run record's base model (path, and a tiny build's hash where the record
    has one), with the warm-up settings of a --warm-up variant."""
    base = run.record.get("base_model") or {"path": run.record["effective_config"]["model_name_or_path"]}
    record = ROOT / base["path"] / WARM_UP_RECORD
    return {**base, "warm_up": json.loads(record.read_text(encoding="utf-8"))} if record.is_file() else base


def base_model_label(base: dict[str, Any]) -> str:
    """models/tiny-qwen3 (build 2760c75eaac8), or `size k=v ... warm-up k=v ...` for a --size/--warm-up variant."""
    if "warm_up" in base:
        record = base["warm_up"]
        size, warm_up = settings_text(record.get("network", {})), settings_text(record["overrides"])
        return " ".join(filter(None, [f"size {size}" if size else "", f"warm-up {warm_up}" if warm_up else ""]))
    return base["path"] + (f" (build {base['tiny_build']})" if "tiny_build" in base else "")


def write_main_job_runs(out: Path, started: str, recipe: str, runs: list[dict[str, Any]]) -> None:
    from vslm.recipes.resolve import DEMO_PROFILE

    out.write_text(json.dumps({"started": started, "machine": machine(), "recipe": recipe, "profile": DEMO_PROFILE,
                               "runs": runs}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def read_main_job(saves: Path, recipe: str) -> SimpleNamespace:
    """What train_then_evaluate left under `saves`: the plan, run record, trainer state and results, final training
    loss and evaluation report."""
    from vslm.recipes.matrix import get_recipe
    from vslm.recipes.resolve import DEMO_PROFILE, resolve

    os.environ["VSLM_SAVES"] = str(saves)  # where resolve() finds the run
    plan = resolve(get_recipe(recipe), DEMO_PROFILE)
    run = {name: json.loads((plan.trained_dir / f"{name}.json").read_text(encoding="utf-8"))
           for name in ("run_record", "trainer_state", "all_results")}
    losses = [e["loss"] for e in run["trainer_state"]["log_history"] if "loss" in e]
    return SimpleNamespace(plan=plan, record=run["run_record"], state=run["trainer_state"], results=run["all_results"],
                           final_training_loss=losses[-1] if losses else None,
                           report=json.loads(plan.report_json.read_text(encoding="utf-8")))


def recipe_config(stage_path: Path | str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / stage_path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def _quiet():
    """LlamaFactory prints a training example and progress bars; keep the benchmark output to its tables."""
    import datasets

    datasets.disable_progress_bars()
    levels = {name: logging.getLogger(name).level for name in ("llamafactory", "datasets", "transformers")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.ERROR)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


_TOKENIZERS: dict[str, Any] = {}


def tokenizer(family: str):
    from vslm.models.tokenizer import build_qwen_tokenizer

    if family not in _TOKENIZERS:
        _TOKENIZERS[family] = build_qwen_tokenizer(family)
    return _TOKENIZERS[family]


def lf_dataset(config: dict[str, Any], family: str, stage: str = "sft", *, packing: bool | None = None,
               neat_packing: bool | None = None, cutoff_len: int | None = None, workers: int | None = None):
    """The train split exactly as `llamafactory-cli train <config>` builds it (tokenised, masked, packed or not).
    workers=None runs the preprocessing in this process (same result for unpacked rows, much faster)."""
    from types import SimpleNamespace

    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import Seq2SeqTrainingArguments

    fields = DataArguments.__dataclass_fields__
    args = {k: v for k, v in config.items() if k in fields}
    args["dataset_dir"] = str(ROOT / config.get("dataset_dir", "."))
    args["overwrite_cache"] = True
    args["preprocessing_num_workers"] = workers if (workers or 1) > 1 else None
    for key, value in (("packing", packing), ("neat_packing", neat_packing), ("cutoff_len", cutoff_len)):
        if value is not None:
            args[key] = value
    pt_packing = args.pop("packing", None) if stage == "pt" else None
    tok = tokenizer(family)
    with _quiet(), tempfile.TemporaryDirectory() as tmp:
        data_args = DataArguments(**args)
        if stage == "pt":  # llamafactory/hparams/parser.py sets packing for pt *after* DataArguments.__post_init__
            data_args.packing = True if pt_packing is None else pt_packing
        training_args = Seq2SeqTrainingArguments(output_dir=tmp, seed=config.get("seed", 42), report_to="none")
        model_args = SimpleNamespace(cache_dir=None, hf_hub_token=None, ms_hub_token=None, om_hub_token=None)
        template = get_template_and_fix_tokenizer(tok, data_args)
        module = get_dataset(template, model_args, data_args, training_args, stage, tok)
        return module["train_dataset"].with_format(None), data_args


def row_lengths(config: dict[str, Any], family: str, cutoff_len: int | None = None) -> list[int]:
    """Token length of every training row (chat template + system prompt + truncation), in dataset order."""
    ds, _ = lf_dataset(config, family, packing=False, neat_packing=False, cutoff_len=cutoff_len)
    return [len(ids) for ids in ds["input_ids"]]


def ceil_to(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def padded_tokens(lengths: list[int], batch_size: int, shuffles: int = 50, seed: int = 0) -> dict[str, float]:
    """Tokens the collator feeds the model without packing: every micro-batch is padded to its longest row,
    rounded up to a multiple of 8, in the Trainer's random order (averaged over `shuffles` permutations;
    the last batch may be short — dataloader_drop_last is false)."""
    import numpy as np

    arr = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    totals = []
    for _ in range(shuffles):
        perm = arr[rng.permutation(len(arr))]
        total = 0
        for start in range(0, len(perm), batch_size):
            chunk = perm[start:start + batch_size]
            total += ceil_to(int(chunk.max()), PAD_TO_MULTIPLE_OF) * len(chunk)
        totals.append(total)
    mean = float(np.mean(totals))
    return {"rows": len(arr), "processed": round(mean), "useful": int(arr.sum()), "useful_fraction": float(arr.sum()) / mean,
            "batches": math.ceil(len(arr) / batch_size), "mean_padded_len": round(mean / len(arr), 1)}


def shard_ranges(n_rows: int, workers: int | None, batch_size: int = 1000) -> list[range]:
    """The row groups LlamaFactory's `dataset.map(batched=True, batch_size=preprocessing_batch_size,
    num_proc=preprocessing_num_workers)` hands to one preprocess call: contiguous shards (datasets'
    Dataset.shard(contiguous=True)), then batches of 1000 inside each shard."""
    n = max(1, min(workers or 1, n_rows))
    groups = []
    div, mod = divmod(n_rows, n)
    for i in range(n):
        start = div * i + min(i, mod)
        end = start + div + (1 if i < mod else 0)
        groups += [range(s, min(s + batch_size, end)) for s in range(start, end, batch_size)]
    return groups


def packed_blocks(config: dict[str, Any], family: str, cutoff_len: int | None = None, workers: int | None = None,
                  lengths: list[int] | None = None) -> dict[str, Any]:
    """Blocks LlamaFactory builds with packing=true / neat_packing=true (the two build the same blocks; neat
    packing only adds a block-diagonal attention mask so rows sharing a block cannot attend to each other):
    rows are encoded at cutoff_len-1, grouped per preprocessing shard, filled by greedy knapsack
    (llamafactory.data.processor.processor_utils.greedy_knapsack) and every block padded to cutoff_len."""
    from llamafactory.data.processor.processor_utils import greedy_knapsack

    cutoff = cutoff_len or config["cutoff_len"]
    workers = config.get("preprocessing_num_workers") if workers is None else workers
    lengths = lengths if lengths is not None else row_lengths(config, family, cutoff_len=cutoff - 1)
    rows_per_block: list[int] = []
    for group in shard_ranges(len(lengths), workers):
        rows_per_block += [len(k) for k in greedy_knapsack([lengths[i] for i in group], cutoff - 1)]
    blocks = len(rows_per_block)
    useful = int(sum(lengths))
    shared = [n for n in rows_per_block if n > 1]
    return {"rows": len(lengths), "blocks": blocks, "block_len": cutoff, "processed": blocks * cutoff, "useful": useful,
            "useful_fraction": useful / max(1, blocks * cutoff), "blocks_with_several_rows": len(shared),
            "rows_sharing_a_block": sum(shared), "max_rows_per_block": max(rows_per_block, default=0),
            "workers": workers or 1}


def packed_blocks_lf(config: dict[str, Any], family: str, cutoff_len: int | None = None, workers: int | None = None) -> dict[str, Any]:
    """The same numbers read from LlamaFactory's own neat-packed dataset (slow: spawns the preprocessing workers);
    used once per run to check packed_blocks()."""
    workers = config.get("preprocessing_num_workers") if workers is None else workers
    ds, data_args = lf_dataset(config, family, packing=True, neat_packing=True, cutoff_len=cutoff_len, workers=workers)
    rows_per_block, useful = [], 0
    for mask in ds["attention_mask"]:  # neat packing: row i of a block has mask value i+1, padding 0
        useful += sum(1 for m in mask if m)
        rows_per_block.append(max(mask))
    block_len = data_args.cutoff_len + 1
    return {"blocks": len(rows_per_block), "block_len": block_len, "useful": useful, "rows": sum(rows_per_block),
            "rows_sharing_a_block": sum(n for n in rows_per_block if n > 1)}


def pt_blocks(config: dict[str, Any], family: str) -> dict[str, Any]:
    """Stage pt: each preprocessing shard's documents (+eos) are concatenated and cut into cutoff_len blocks;
    the remainder of every shard is dropped."""
    ds, _ = lf_dataset(config, family, stage="pt", packing=False, cutoff_len=10 ** 6)
    lengths = [len(x) for x in ds["input_ids"]]
    cutoff = config["cutoff_len"]
    blocks = sum(sum(lengths[i] for i in group) // cutoff
                 for group in shard_ranges(len(lengths), config.get("preprocessing_num_workers")))
    corpus = sum(lengths)
    return {"rows": len(lengths), "blocks": blocks, "block_len": cutoff, "processed": blocks * cutoff,
            "useful": blocks * cutoff, "useful_fraction": 1.0, "corpus_tokens": corpus,
            "dropped_tokens": corpus - blocks * cutoff, "workers": config.get("preprocessing_num_workers") or 1}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"nproc": nproc, "cpu": cpu, "ram_gib": round(ram, 1),
            "loadavg_at_start": [round(x, 2) for x in load] if load else None}

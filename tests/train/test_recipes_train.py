"""A tiny-profile training step for each distinct stage and model family, and multi-process torchrun."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import VENV_BIN, run

pytestmark = pytest.mark.slow
VSLM = [sys.executable, "-m", "vslm"]


def _losses(out_dir) -> list[float]:
    return [json.loads(l)["loss"] for l in (out_dir / "trainer_log.jsonl").read_text().splitlines() if '"loss"' in l]


def test_qwen3_classifier_sft_step(tiny_qwen3, tmp_path):
    out = tmp_path / "adapter"
    result = run(VSLM + ["train", "platform_classifier", "--profile", "tiny", "max_steps=4", "logging_steps=1", f"output_dir={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "adapter_model.safetensors").is_file() and len(_losses(out)) == 4
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8


def test_two_stage_pt_then_sft_continues_the_same_adapter(tiny_qwen2, tmp_path):
    pt_out, sft_out = tmp_path / "pt_adapter", tmp_path / "adapter"
    result = run(VSLM + ["train", "finance_rules", "--profile", "tiny", "max_steps=3", "logging_steps=1", "eval_steps=3",
                         "save_steps=3"], env={**os.environ, "VSLM_SAVES": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("run_record.json"))]
    stages = {r["stage"]: r for r in records}
    assert set(stages) == {"train_pt", "train"}
    assert stages["train"]["effective_config"]["adapter_name_or_path"].endswith("pt_adapter")
    assert stages["train_pt"]["effective_config"]["stage"] == "pt"
    del pt_out, sft_out


def test_torchrun_two_processes_over_gloo(tiny_qwen2, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", "MASTER_PORT": "29517",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    result = run(VSLM + ["train", "telecom_r32", "--profile", "tiny", "max_steps=3", "logging_steps=1",
                         "per_device_train_batch_size=2", "ddp_backend=gloo", f"output_dir={out}"], env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "torchrun" in result.stdout + result.stderr or "world size: 2" in (result.stdout + result.stderr).lower()
    assert (out / "adapter_model.safetensors").is_file()

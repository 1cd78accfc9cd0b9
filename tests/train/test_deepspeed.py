"""DeepSpeed on CPU (2 processes over gloo, tiny model), the offline DeepSpeed config check, the ZeRO-3 + tiny profile
rule, and the GPU-package preflight / `make install-gpu` pins. Multi-process runs are slow: three short trainings
(DDP, ZeRO-2, ZeRO-3 as two "nodes" on 127.0.0.1), 5 steps each; the first DeepSpeed run on a machine also compiles
DeepSpeed's shared-memory comm op into ~/.cache/torch_extensions (about a minute on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run

VSLM = [sys.executable, "-m", "vslm"]
STEPS = ["max_steps=5", "save_steps=5", "logging_steps=1"]
DS = ROOT / "recipes" / "deepspeed"


def _env(saves: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NNODES", "NODE_RANK", "NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "VSLM_SAVES": str(saves), **extra}


def _losses(adapter: Path) -> list[float]:
    return [row["loss"] for row in map(json.loads, (adapter / "trainer_log.jsonl").read_text().splitlines()) if "loss" in row]


def _weights(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _train(saves: Path, *extra: str, **env: str) -> tuple[Path, str]:
    out = run([*VSLM, "train", "telecom_r32", "--profile", "tiny", *STEPS, *extra], env=_env(saves, **env), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return saves / "tiny" / "telecom_r32" / "adapter", out.stdout


# --- offline config check ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,stage", [("ds_z2.json", 2), ("ds_z3.json", 3)])
def test_shipped_configs_pass_the_offline_check(name, stage):
    from vslm.recipes.validate import deepspeed_config_problems, deepspeed_files, expected_zero_stage

    assert DS / name in deepspeed_files()
    assert expected_zero_stage(DS / name) == stage
    assert deepspeed_config_problems(DS / name) == []


def test_planted_mistakes_in_deepspeed_configs_are_one_line_each(tmp_path):
    shipped = json.loads((DS / "ds_z3.json").read_text(encoding="utf-8"))

    def plant(name: str, edit) -> Path:
        cfg = json.loads(json.dumps(shipped))
        edit(cfg)
        (tmp_path / name).write_text(json.dumps(cfg, indent=1), encoding="utf-8")
        return tmp_path / name

    files = [
        plant("ds_z3_top.json", lambda c: c.__setitem__("zero_optimisation", c.pop("zero_optimization"))),
        plant("ds_z3_clip.json", lambda c: c.__setitem__("gradient_cliping", c.pop("gradient_clipping"))),
        plant("ds_z3_nostage.json", lambda c: c["zero_optimization"].pop("stage")),  # DeepSpeed silently reads stage 0
        plant("ds_z2_named.json", lambda c: None),  # a ZeRO-3 file named as ZeRO-2
        plant("ds_z3_inner.json", lambda c: c["zero_optimization"].__setitem__("overlap_com", True)),
        plant("ds_z3_five.json", lambda c: c["zero_optimization"].__setitem__("stage", 5)),
    ]
    broken = tmp_path / "ds_z2_syntax.json"
    broken.write_text('{\n  "train_batch_size": "auto",\n}\n', encoding="utf-8")
    out = run([*VSLM, "validate", *map(str, files), str(broken)])
    assert out.returncode == 1
    lines = [l for l in out.stderr.splitlines() if l.startswith(str(tmp_path))]
    assert lines == [
        f"{files[0]}: zero_optimisation: not a DeepSpeed key, DeepSpeed ignores it — did you mean `zero_optimization`?",
        f"{files[1]}: gradient_cliping: not a DeepSpeed key, DeepSpeed ignores it — did you mean `gradient_clipping`?",
        f'{files[2]}: zero_optimization.stage: DeepSpeed reads ZeRO stage 0, the file name says 3 — set "stage": 3',
        f'{files[3]}: zero_optimization.stage: DeepSpeed reads ZeRO stage 3, the file name says 2 — set "stage": 2',
        f"{files[4]}: zero_optimization.overlap_com: not a DeepSpeed key here (DeepSpeed rejects it) — did you mean `overlap_comm`?",
        f"{files[5]}: zero_optimization.stage: 5 rejected by DeepSpeed (Input should be 0, 1, 2, 3 or 3) — fix that value",
        f"{broken}:3: not valid JSON (Expecting property name enclosed in double quotes) — fix that line",
    ], out.stderr
    assert "error: 7 problem(s) found" in out.stderr


def test_a_fixed_value_that_contradicts_the_recipe_fails_before_training(tmp_path, monkeypatch):
    from vslm.core.errors import RecipeError
    from vslm.recipes.matrix import get_recipe
    from vslm.train.run import train

    cfg = json.loads((DS / "ds_z2.json").read_text(encoding="utf-8"))
    cfg["train_micro_batch_size_per_gpu"] = 2
    fixed = tmp_path / "ds_z2.json"
    fixed.write_text(json.dumps(cfg), encoding="utf-8")
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path / "saves"))
    with pytest.raises(RecipeError) as err:
        train(get_recipe("telecom_r32"), "tiny", {"deepspeed": str(fixed)})
    assert str(err.value).startswith("recipes/telecom_r32.yaml (with its overrides): deepspeed: ")
    assert "ds train_micro_batch_size_per_gpu=2 vs hf per_device_train_batch_size=4" in str(err.value)
    assert "\n" not in str(err.value) and not (tmp_path / "saves").exists()


# --- ZeRO-3 with the tiny profile's use_cpu ------------------------------------------------------------------------

def test_zero3_over_several_cpu_processes_is_refused_in_preflight(tmp_path, monkeypatch):
    """Measured here: ZeRO-3 over 2 CPU processes started from wrong weights on some runs (first losses 8.72, 9.75 vs
    DDP's 7.70), so without a GPU it stops before anything runs; one process, or ZeRO-2, goes on."""
    from vslm.recipes import resolve
    from vslm.train import run as train
    from vslm.core.errors import RecipeError
    from vslm.recipes.matrix import get_recipe

    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    assert resolve.accelerator_count() == 0, "this test describes a CPU-only machine"
    recipe = get_recipe("telecom_r32")
    stage = recipe.stage("train")
    z3, z2 = {"deepspeed": "recipes/deepspeed/ds_z3.json"}, {"deepspeed": "recipes/deepspeed/ds_z2.json"}
    monkeypatch.setenv("NPROC_PER_NODE", "1")
    assert resolve.stage_overrides(recipe, stage, "tiny", z3)["use_cpu"] is True, "one process: nothing to refuse"
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    assert resolve.stage_overrides(recipe, stage, "tiny", z2)["use_cpu"] is True, "ZeRO-2 works on CPU"
    with pytest.raises(RecipeError) as err:
        train.train(recipe, "tiny", z3)
    assert str(err.value) == ("recipes/telecom_r32.yaml: deepspeed: ZeRO-3 (recipes/deepspeed/ds_z3.json) over 2 CPU processes "
                              + resolve.ZERO3_ON_CPU)
    assert not list(tmp_path.rglob("*"))


def test_zero3_over_several_gpus_drops_the_profiles_use_cpu(monkeypatch, capsys):
    from vslm.recipes import resolve
    from vslm.recipes.matrix import get_recipe

    monkeypatch.setattr(resolve, "accelerator_count", lambda: 2)
    recipe = get_recipe("telecom_r32")
    stage = recipe.stage("train")
    z3, z2 = {"deepspeed": "recipes/deepspeed/ds_z3.json"}, {"deepspeed": "recipes/deepspeed/ds_z2.json"}
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    monkeypatch.setenv("NPROC_PER_NODE", "1")
    assert resolve.stage_overrides(recipe, stage, "tiny", z3)["use_cpu"] is True, "one process: nothing to fix"
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    assert resolve.stage_overrides(recipe, stage, "tiny", z2)["use_cpu"] is True, "ZeRO-2 works with use_cpu"
    assert "use_cpu" not in resolve.stage_overrides(recipe, stage, "tiny", z3)
    assert "note: dropped the profile's use_cpu=true: ZeRO-3 (recipes/deepspeed/ds_z3.json) over 2 processes" in capsys.readouterr().out
    monkeypatch.setenv("NPROC_PER_NODE", "1")
    monkeypatch.setenv("NNODES", "2")
    assert "use_cpu" not in resolve.stage_overrides(recipe, stage, "tiny", z3), "two nodes of one process are two processes"


def test_zero3_on_gpus_with_an_explicit_use_cpu_fails_in_preflight(tmp_path, monkeypatch):
    from vslm.recipes import resolve
    from vslm.train import run as train
    from vslm.core.errors import RecipeError
    from vslm.recipes.matrix import get_recipe

    monkeypatch.setattr(resolve, "accelerator_count", lambda: 2)
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    with pytest.raises(RecipeError) as err:
        train.train(get_recipe("telecom_r32"), "tiny", {"use_cpu": True, "deepspeed": "recipes/deepspeed/ds_z3.json"})
    assert str(err.value) == (
        "recipes/telecom_r32.yaml: use_cpu: ZeRO-3 (recipes/deepspeed/ds_z3.json) over 2 processes fails with "
        "use_cpu=true (transformers then starts the process group the CPU way and DeepSpeed counts one process) — remove "
        "use_cpu=true; without a GPU training runs on the CPU anyway (fp32)")
    assert not list(tmp_path.rglob("*"))


# --- GPU packages: preflight and pins ------------------------------------------------------------------------------

def test_a_gpu_switch_without_its_package_fails_in_preflight_naming_package_and_command(tmp_path):
    from vslm.recipes.validate import gpu_package_problems

    if gpu_package_problems({"flash_attn": "fa2", "enable_liger_kernel": True}) == []:
        pytest.skip("flash-attn and liger-kernel are installed here (a GPU machine after `make install-gpu`)")
    out = run([*VSLM, "train", "telecom_r32"], env=_env(tmp_path))  # the shipped recipe: fa2 + Liger on
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: recipes/telecom_r32.yaml (with its overrides): flash_attn: fa2 needs the `flash-attn` package, "
                           "which is not installed — run `make install-gpu`"), last
    assert "enable_liger_kernel: true needs the `liger-kernel` package" in last
    assert "$ llamafactory-cli" not in out.stdout and not (ROOT / "saves" / "telecom_r32").exists()
    from vslm.core.errors import RecipeError
    from vslm.recipes.matrix import get_recipe
    from vslm.recipes.resolve import resolve
    from vslm.train.run import check_stage_arguments

    recipe = get_recipe("telecom_r32")
    with pytest.raises(RecipeError, match="flash_attn: fa2 needs the `flash-attn` package") as err:
        check_stage_arguments(resolve(recipe, "tiny", {"flash_attn": "fa2"}).stage("train"))
    assert "liger-kernel" not in str(err.value), "the tiny profile turns Liger off"


def test_the_tiny_profile_needs_no_gpu_package_and_deepspeed_is_named_when_absent():
    from vslm.recipes.matrix import get_recipe
    from vslm.recipes.resolve import effective_config, stage_overrides
    from vslm.recipes.validate import gpu_package_problems

    for name in ("telecom_r32", "finance_rules", "platform_classifier"):
        recipe = get_recipe(name)
        for stage in recipe.train_stages:
            config = effective_config(stage, stage_overrides(recipe, stage, "tiny", {"deepspeed": "recipes/deepspeed/ds_z2.json"}))
            assert gpu_package_problems(config) == [], name
            assert gpu_package_problems(config, installed=lambda package: package != "deepspeed") == [
                "deepspeed: recipes/deepspeed/ds_z2.json needs the `deepspeed` package, which is not installed — run "
                "`make install-gpu` (a CUDA machine) or turn the switch off (the tiny profile does)"]


def test_install_gpu_refuses_without_a_gpu_and_pins_deepspeed_in_the_lock():
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    assert "deepspeed==0.16.9" in lock
    pins = run(["bash", "scripts/install_gpu.sh", "--print-pins"]).stdout.split()
    assert [p.split("==")[0] for p in pins] == ["flash-attn", "liger-kernel", "wheel", "vllm"]
    if subprocess.run(["sh", "-c", "nvidia-smi -L"], capture_output=True).returncode != 0:
        out = run(["bash", "scripts/install_gpu.sh"])
        assert out.returncode == 1 and out.stderr.startswith("error: no NVIDIA GPU found (nvidia-smi)")


@pytest.mark.slow
def test_gpu_pins_resolve_against_the_lock(tmp_path):
    """flash-attn and liger-kernel go into .venv: pip (PyPI, no CUDA needed) must resolve them with everything else held
    at requirements.lock and install nothing but them. vLLM goes into its own venv: a wheel exists for this platform."""
    pins = dict(p.split("==") for p in run(["bash", "scripts/install_gpu.sh", "--print-pins"]).stdout.split())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    got = run([*pip, "install", "--target", str(tmp_path / "wheel"), f"wheel=={pins['wheel']}"])
    assert got.returncode == 0, got.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "wheel"), "FLASH_ATTENTION_SKIP_CUDA_BUILD": "TRUE"}
    got = run([*pip, "install", "--dry-run", "--no-build-isolation", "-c", "requirements.lock", "--report", str(tmp_path / "r.json"),
               f"flash-attn=={pins['flash-attn']}", f"liger-kernel=={pins['liger-kernel']}"], env=env, timeout=600)
    assert got.returncode == 0, got.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted((i["metadata"]["name"].replace("_", "-"), i["metadata"]["version"]) for i in report["install"]) == [
        ("flash-attn", pins["flash-attn"]), ("liger-kernel", pins["liger-kernel"])]
    got = run([*pip, "install", "--dry-run", "--no-deps", "--ignore-installed", "--report", str(tmp_path / "v.json"),
               f"vllm=={pins['vllm']}"], timeout=600)
    assert got.returncode == 0, got.stderr[-2000:]
    vllm = json.loads((tmp_path / "v.json").read_text())["install"][0]["metadata"]
    assert vllm["version"] == pins["vllm"]
    assert any(r.startswith("transformers") and "5.6.0" not in r for r in vllm["requires_dist"]), "why it has its own venv"


# --- real multi-process training -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ddp(tiny_qwen2, tmp_path_factory):
    """The reference: plain DDP over 2 processes (no DeepSpeed), same steps and data."""
    return _train(tmp_path_factory.mktemp("ddp"), FORCE_TORCHRUN="1", NPROC_PER_NODE="2")


@pytest.mark.slow
def test_zero2_over_two_processes_matches_ddp(ddp, tmp_path):
    adapter, _ = _train(tmp_path, "deepspeed=recipes/deepspeed/ds_z2.json", FORCE_TORCHRUN="1", NPROC_PER_NODE="2")
    shards = adapter / "checkpoint-5" / "global_step5"
    assert {p.name for p in shards.iterdir()} >= {
        "mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"}
    reference, _ = ddp
    assert len(_losses(adapter)) == 5
    assert _losses(adapter) == pytest.approx(_losses(reference), rel=1e-4)
    assert _max_diff(_weights(adapter), _weights(reference)) <= 1e-5  # measured 0.0


@pytest.mark.slow
def test_zero2_as_two_nodes_on_localhost_matches_ddp(ddp, tmp_path):
    """The README's multi-node line (NNODES=2, NODE_RANK=0/1, MASTER_ADDR/PORT), both "nodes" on this machine."""
    from vslm.serve.servers import free_port

    cmd = [*VSLM, "train", "telecom_r32", "--profile", "tiny", *STEPS, "deepspeed=recipes/deepspeed/ds_z2.json"]
    node = dict(FORCE_TORCHRUN="1", NNODES="2", NPROC_PER_NODE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    log = (tmp_path / "node1.log").open("w")
    second = subprocess.Popen(cmd, cwd=ROOT, env=_env(tmp_path, NODE_RANK="1", **node), stdout=log, stderr=subprocess.STDOUT)
    try:
        first = run(cmd, env=_env(tmp_path, NODE_RANK="0", **node), timeout=900)
        assert second.wait(timeout=300) == 0, (tmp_path / "node1.log").read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
        log.close()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    adapter = tmp_path / "tiny" / "telecom_r32" / "adapter"
    shards = adapter / "checkpoint-5" / "global_step5"
    assert {p.name for p in shards.iterdir()} >= {
        "mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"}
    reference, _ = ddp
    assert _losses(adapter) == pytest.approx(_losses(reference), rel=1e-4)
    assert _max_diff(_weights(adapter), _weights(reference)) <= 1e-5

"""The resolver: one answer to what every stage of a recipe runs with and where it writes."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from vslm.core.errors import RecipeError
from vslm.recipes import resolve as resolver
from vslm.recipes.matrix import format_overrides, get_recipe, load_recipes
from vslm.recipes.resolve import resolve


def test_tiny_profile_paths_all_live_under_the_saves_root(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    plan = resolve(get_recipe("telecom_r32"), "tiny")
    run = f"{tmp_path}/tiny/telecom_r32"
    assert plan.stage("train").overrides["output_dir"] == f"{run}/adapter"
    assert plan.adapter_dir == f"{run}/adapter"
    assert plan.merged_dir == f"{run}/merged"
    assert plan.base_model == "models/tiny-qwen2"
    assert plan.eval_dir == tmp_path / "tiny" / "telecom_r32" / "eval"
    assert plan.rag_dir == tmp_path / "tiny" / "telecom_r32" / "rag"
    assert plan.serve_log == tmp_path / "serve" / "telecom_r32.log"
    assert plan.eval_file("base", rag=True) == tmp_path / "eval" / "telecom_r32" / "base-rag.json"
    assert plan.probe_dir == tmp_path / "probe" / "telecom_r32"


def test_effective_config_is_the_recipe_file_with_the_overrides_after_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    recipe = get_recipe("telecom_r32")
    run = resolve(recipe, "tiny", {"learning_rate": 0.01}).stage("train")
    shipped = yaml.safe_load((ROOT / "recipes" / "telecom_r32.yaml").read_text(encoding="utf-8"))
    assert run.recipe_file.as_posix() == "recipes/telecom_r32.yaml"
    assert run.config == {**shipped, **run.overrides}
    assert run.config["learning_rate"] == 0.01 and shipped["learning_rate"] != 0.01, "the caller's override comes last"
    assert run.output == run.overrides["output_dir"]
    assert run.argv() == ["recipes/telecom_r32.yaml", *format_overrides(run.overrides)]


def test_extra_overrides_reach_training_and_merge_but_not_serving(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    plan = resolve(get_recipe("telecom_r32"), "tiny", {"max_steps": 5})
    assert plan.stage("train").overrides["max_steps"] == 5
    assert plan.stage("merge").overrides["max_steps"] == 5
    assert "max_steps" not in plan.stage("infer").overrides


def test_shipped_recipe_runs_its_files_unchanged():
    recipe = get_recipe("telecom_r32")
    plan = resolve(recipe)
    assert plan.stage("train").overrides == {} and plan.stage("merge").overrides == {}
    assert plan.base_model == recipe["model"]
    assert plan.adapter_dir == recipe["adapter_dir"] == "saves/telecom_r32/adapter"
    assert plan.merged_dir == recipe["merged_dir"]


def test_two_stage_recipe_trains_sft_on_the_pt_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    recipe = next(r for r in load_recipes().values() if r["pt"])
    plan = resolve(recipe, "tiny")
    kinds = [run.stage.kind for run in plan.train_stages]
    assert kinds == ["train_pt", "train"]
    pt_out = plan.stage("train_pt").overrides["output_dir"]
    assert plan.stage("train").overrides["adapter_name_or_path"] == pt_out
    assert "cutoff_len" not in plan.stage("train_pt").overrides


def test_unknown_profile_is_one_line():
    with pytest.raises(RecipeError, match=r"unknown profile `huge`: choose one of tiny"):
        resolve(get_recipe("telecom_r32"), "huge")


@pytest.mark.parametrize("name", sorted(load_recipes()))
def test_serving_settings_come_from_the_recipes_vllm_file(name, monkeypatch):
    monkeypatch.setattr(resolver, "accelerator_count", lambda: 0)
    recipe = get_recipe(name)
    vllm_file = yaml.safe_load((ROOT / recipe.stage("vllm").path).read_text(encoding="utf-8"))
    settings = resolve(recipe, "tiny").serving()
    assert settings.max_model_len == vllm_file["vllm_maxlen"]
    assert settings.max_lora_rank == vllm_file["vllm_max_lora_rank"] == recipe["serve_max_lora_rank"]
    assert settings.dtype == "float32", "vLLM on a CPU serves in fp32"
    assert settings.worker_in_engine, "vLLM on a CPU runs its model worker inside the engine process"


def test_gpu_serving_keeps_the_models_dtype_and_vllms_process_layout(monkeypatch):
    monkeypatch.setattr(resolver, "accelerator_count", lambda: 1)
    settings = resolve(get_recipe("telecom_r32")).serving()
    assert settings.dtype is None and not settings.worker_in_engine


def test_tiny_full_profile_trains_a_whole_model_that_is_served_and_exported_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    plan = resolve(get_recipe("telecom_r32"), "tiny_full")
    run = f"{tmp_path}/tiny_full/telecom_r32"
    train = plan.stage("train")
    assert plan.full_finetune and train.config["finetuning_type"] == "full"
    assert train.config["max_samples"] == plan.matrix["profiles"]["tiny_full"]["max_samples"] > 0
    assert train.overrides["output_dir"] == f"{run}/full" and plan.trained_dir == tmp_path / "tiny_full" / "telecom_r32" / "full"
    assert plan.adapter_dir is None and plan.merged_dir == f"{run}/full", "nothing to merge: the trained folder is the model"
    assert plan.base_model == "models/tiny-qwen2", "the base stays the tiny model the run started from"
    infer = plan.stage("infer")
    assert infer.overrides["model_name_or_path"] == f"{run}/full"
    assert "adapter_name_or_path=null" in infer.argv(), "the infer recipe's shipped adapter path is switched off"
    assert not resolve(get_recipe("telecom_r32"), "tiny").full_finetune


@pytest.mark.parametrize("native", [True, False])
def test_a_full_fine_tune_on_the_cpu_uses_bf16_only_where_the_cpu_has_it(native, tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    monkeypatch.setattr(resolver, "native_cpu_bf16", lambda: native)
    assert resolve(get_recipe("telecom_r32"), "tiny_full").stage("train").config["bf16"] is native
    assert resolve(get_recipe("telecom_r32"), "tiny").stage("train").config["bf16"] is False, "LoRA stays fp32"
    assert resolve(get_recipe("telecom_r32"), "tiny_full", {"bf16": False}).stage("train").config["bf16"] is False
    assert resolve(get_recipe("telecom_r32")).stage("train").config["bf16"] is True, "as shipped: the GPU setting"


def test_tiny_full_two_stage_recipe_starts_its_sft_stage_from_the_pt_model(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    plan = resolve(get_recipe("finance_rules"), "tiny_full")
    pt, sft = plan.train_stages
    assert pt.overrides["output_dir"] == f"{tmp_path}/tiny_full/finance_rules/pt_full"
    assert sft.overrides["model_name_or_path"] == pt.overrides["output_dir"] and "adapter_name_or_path" not in sft.overrides

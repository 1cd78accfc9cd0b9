"""`vslm validate`: every recipe passes; planted mistakes are all reported together with file, key and fix."""

from pathlib import Path

import pytest

from vslm.validate import recipe_files, validate_all

ROOT = Path(__file__).resolve().parent.parent
FILES = recipe_files()


def test_recipes_are_found_recursively():
    assert len(FILES) >= 20
    assert all(p.suffix == ".yaml" for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_recipe_validates_through_llamafactory_parser(path):
    assert validate_all([path]) == []


def test_planted_mistakes_are_reported_together(tmp_path):
    text = (ROOT / "recipes" / "telecom_r32.yaml").read_text(encoding="utf-8")
    text = text.replace("lora_rank: 32", "lora_rnak: 32").replace("dataset: telecom_train", "dataset: telecom_trian")
    text = text.replace("template: qwen\n", "template: qwen3\n")
    bad = tmp_path / "telecom_r32.yaml"
    bad.write_text(text, encoding="utf-8")
    merge = tmp_path / "telecom_r32_merge.yaml"
    merge.write_text((ROOT / "recipes" / "telecom_r32_merge.yaml").read_text(encoding="utf-8") + "quantization_bit: 4\n")
    vllm = tmp_path / "telecom_r32_vllm.yaml"
    vllm.write_text((ROOT / "recipes" / "telecom_r32_vllm.yaml").read_text(encoding="utf-8").replace("vllm_max_lora_rank: 32", "vllm_max_lora_rank: 16"))
    problems = validate_all([bad, merge, vllm])
    joined = "\n".join(problems)
    assert "lora_rnak: not a LlamaFactory train argument — did you mean `lora_rank`?" in joined
    assert "dataset: `telecom_trian` is not registered in dataset_info.json — did you mean `telecom_train`?" in joined
    assert "template: `qwen3` does not match the qwen2 model `Qwen/Qwen2.5-1.5B-Instruct` — use template: qwen" in joined
    assert "quantization_bit: merge recipes must load the unquantized base" in joined
    assert "vllm_max_lora_rank: 16 < lora_rank 32" in joined
    assert all(p.startswith(str(tmp_path)) for p in problems), "every problem names its file"


def test_cli_exits_nonzero_and_prints_every_problem(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "x.yaml"
    bad.write_text((ROOT / "recipes" / "platform_classifier.yaml").read_text(encoding="utf-8")
                   .replace("enable_thinking: false", "enable_thinking: true").replace("cutoff_len: 512", "cutof_len: 512"))
    out = subprocess.run([sys.executable, "-m", "vslm", "validate", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1
    assert "cutof_len" in out.stderr and "enable_thinking" in out.stderr and "2 problem(s) found" in out.stderr


def test_a_later_stage_rejected_by_llamafactory_fails_before_the_first_stage_trains(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "VSLM_SAVES": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "vslm", "train", "finance_rules", "--profile", "tiny", "save_steps=5"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: recipes/finance_rules.yaml (with its overrides): LlamaFactory rejects") and "load_best_model_at_end" in last, last
    assert not list(tmp_path.rglob("*")), "the pt stage did not start"

"""`vslm validate`: every recipe passes; planted mistakes are all reported together with file, key and fix."""


import pytest

from conftest import ROOT

from vslm.recipes.validate import recipe_files, validate_all

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
    assert last.startswith("error: recipes/finance_rules.yaml (with its overrides): (LlamaFactory parser)") and "load_best_model_at_end" in last, last
    assert not list(tmp_path.rglob("*")), "the pt stage did not start"


def test_a_bad_value_on_the_command_line_is_one_line_before_llamafactory_runs(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "VSLM_SAVES": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "vslm", "train", "telecom_r32", "--profile", "tiny", "learning_rate=abc"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: recipes/telecom_r32.yaml (with its overrides): learning_rate") and "abc" in last, last
    assert "$ llamafactory-cli" not in result.stdout and not list(tmp_path.rglob("*"))


def test_values_are_checked_against_llamafactorys_types_and_ranges(tmp_path):
    text = (ROOT / "recipes" / "telecom_r32.yaml").read_text(encoding="utf-8")
    for old, new in (("learning_rate: 0.0001", "learning_rate: abc"), ("lora_rank: 32", "lora_rank: abc"),
                     ("bf16: true", "bf16: maybe"), ("cutoff_len: 1024", 'cutoff_len: "1k"'),
                     ("per_device_train_batch_size: 4", "per_device_train_batch_size: -4")):
        assert old in text, old
        text = text.replace(old, new)
    bad = tmp_path / "telecom_r32.yaml"
    bad.write_text(text, encoding="utf-8")
    problems = validate_all([bad])
    assert sorted(problems) == sorted([
        f'{bad}: learning_rate: "abc" is not a number — LlamaFactory\'s TrainingArguments.learning_rate takes a number, e.g. learning_rate: 5.0e-5',
        f'{bad}: lora_rank: "abc" is not a whole number — LlamaFactory\'s FinetuningArguments.lora_rank takes a whole number, e.g. lora_rank: 8',
        f'{bad}: bf16: "maybe" is not true or false — LlamaFactory\'s TrainingArguments.bf16 takes true or false, e.g. bf16: false',
        f'{bad}: cutoff_len: "1k" is not a whole number — LlamaFactory\'s DataArguments.cutoff_len takes a whole number, e.g. cutoff_len: 2048',
        f"{bad}: per_device_train_batch_size: -4 is out of range — it must be greater than 0, e.g. per_device_train_batch_size: 8",
    ])


def test_recipe_files_are_read_as_llamafactory_reads_them(tmp_path):
    """llamafactory-cli loads YAML with OmegaConf, where `1e-4` is a number; quoted, it is text."""
    text = (ROOT / "recipes" / "cloud_service.yaml").read_text(encoding="utf-8")
    plain = tmp_path / "plain.yaml"
    plain.write_text(text.replace("learning_rate: 0.0002", "learning_rate: 2e-4"), encoding="utf-8")
    assert validate_all([plain]) == []
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text(text.replace("learning_rate: 0.0002", 'learning_rate: "2e-4"'), encoding="utf-8")
    assert validate_all([quoted]) == [f'{quoted}: learning_rate: "2e-4" is text, not a number — write learning_rate: 2.0e-4 '
                                      "without quotes (LlamaFactory's TrainingArguments.learning_rate takes a number)"]


def test_command_line_numbers_are_typed_as_llamafactory_cli_types_them():
    """`vslm train ... learning_rate=1e-4` reaches llamafactory-cli, whose OmegaConf reads a number; only nonsense fails."""
    import yaml

    from vslm.recipes.validate import parse_with_llamafactory

    config = yaml.safe_load((ROOT / "recipes" / "finance_rules.yaml").read_text(encoding="utf-8"))
    assert parse_with_llamafactory("train", {**config, "learning_rate": "1e-4", "bf16": "false"}) is None
    assert parse_with_llamafactory("train", {**config, "learning_rate": "fast"}).startswith('learning_rate: "fast" is not a number')


def test_every_profile_variant_goes_through_llamafactorys_parser(tmp_path, monkeypatch):
    """A profile that clashes with a recipe (save_steps 50 vs eval_steps 100 + load_best_model_at_end) is reported."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text((ROOT / "templates" / "matrix.yaml").read_text(encoding="utf-8").replace("    eval_steps: 50\n", ""), encoding="utf-8")
    monkeypatch.setenv("VSLM_MATRIX", str(matrix))
    problems = validate_all([ROOT / "recipes" / "finance_rules.yaml", ROOT / "recipes" / "telecom_r32.yaml"])
    assert len(problems) == 1, problems
    assert problems[0].startswith("recipes/finance_rules.yaml with the tiny profile's overrides: (LlamaFactory parser) ValueError: "
                                  "--load_best_model_at_end requires the saving steps to be a round multiple of the evaluation steps")


def test_command_line_overrides_are_typed_as_llamafactory_cli_types_them():
    from vslm.recipes.matrix import get_recipe
    from vslm.recipes.resolve import resolve
    from vslm.train.run import check_stage_arguments, parse_overrides

    over = parse_overrides(["learning_rate=1e-2", "max_steps=5", "adapter_name_or_path=null", "dataset=a,b", "use_cpu=true"])
    assert over == {"learning_rate": 0.01, "max_steps": 5, "adapter_name_or_path": None, "dataset": "a,b", "use_cpu": True}
    recipe = get_recipe("telecom_r32")
    check_stage_arguments(resolve(recipe, "tiny", parse_overrides(["learning_rate=1e-2"])).stage("train"))  # no error

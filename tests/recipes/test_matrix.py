"""templates/matrix.yaml has a closed schema: a broken matrix is one line per problem naming the recipe and key
and saying what to write instead — never a traceback, never a silently rendered default or garbled value."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

from vslm.core.errors import RecipeError
from vslm.recipes.matrix import MATRIX, load_matrix, load_recipes

SHIPPED = MATRIX.read_text(encoding="utf-8")
TELECOM_LORA = "    lora: {rank: 32, alpha: 64, dropout: 0.05, target: all}\n    learning_rate: 1.0e-4\n    num_train_epochs: 5\n    per_device_train_batch_size: 4"
TELECOM_BF16 = """      bf16: [true, "Ampere+ GPUs train 1.5B in bf16 at half the memory of fp32 with fp32's range"]"""

# (case, old text, new text, the one line `vslm render` must print after "error: <matrix>: ")
BAD = [
    ("lora_not_a_mapping", TELECOM_LORA, TELECOM_LORA.replace("{rank: 32, alpha: 64, dropout: 0.05, target: all}", "32"),
     "recipes.telecom_r32.lora: 32 is not a mapping — write lora: {rank: 16, alpha: 32, dropout: 0.05, target: all}"),
    ("switch_not_a_pair", TELECOM_BF16, "      bf16: true",
     'recipes.telecom_r32.switches.bf16: true is not a [value, reason] pair — write bf16: [true, "why this setting"]'),
    ("switch_value_wrong_type", TELECOM_BF16, '      bf16: [maybe, "a reason"]',
     'recipes.telecom_r32.switches.bf16: the value "maybe" is not true or false — write bf16: [true, "why this setting"]'),
    ("unknown_family", "    family: qwen2\n    model: Qwen/Qwen2.5-1.5B-Instruct\n    template: qwen\n    system: 你是一名中国移动",
     "    family: qwen4\n    model: Qwen/Qwen2.5-1.5B-Instruct\n    template: qwen\n    system: 你是一名中国移动",
     "recipes.telecom_r32.family: unknown family `qwen4` — did you mean qwen3?"),
    ("missing_model", "    family: qwen2\n    model: Qwen/Qwen2.5-1.5B-Instruct\n    template: qwen\n    system: 你是一名中国移动",
     "    family: qwen2\n    template: qwen\n    system: 你是一名中国移动",
     "recipes.telecom_r32.model: missing — add model: Qwen/Qwen2.5-1.5B-Instruct"),
    ("datasets_as_a_string", "    datasets: [telecom_train]\n", "    datasets: telecom_train\n",
     'recipes.telecom_r32.datasets: the text "telecom_train" is not a list — write datasets: [telecom_train]'),
    ("misspelled_key", TELECOM_LORA, TELECOM_LORA.replace("learning_rate", "lerning_rate"),
     "recipes.telecom_r32.lerning_rate: unknown key — did you mean learning_rate?"),
    ("exponent_without_dot", TELECOM_LORA, TELECOM_LORA.replace("1.0e-4", "1e-4"),
     "recipes.telecom_r32.learning_rate: YAML reads 1e-4 as text — write it with a dot, e.g. learning_rate: 1.0e-4"),
    ("negative_batch", TELECOM_LORA, TELECOM_LORA.replace("per_device_train_batch_size: 4", "per_device_train_batch_size: -4"),
     "recipes.telecom_r32.per_device_train_batch_size: -4 is out of range — it must be greater than 0, e.g. per_device_train_batch_size: 4"),
    ("switch_outside_switches", TELECOM_LORA, TELECOM_LORA + "\n    bf16: false",
     'recipes.telecom_r32.bf16: GPU switches go under `switches:` with a reason — write switches: {bf16: [false, "why this setting"]}'),
    ("template_of_another_family", "    family: qwen2\n    model: Qwen/Qwen2.5-1.5B-Instruct\n    template: qwen\n    system: 你是一名中国移动",
     "    family: qwen2\n    model: Qwen/Qwen2.5-1.5B-Instruct\n    template: qwen3\n    system: 你是一名中国移动",
     "recipes.telecom_r32.template: `qwen3` is not a chat template of family qwen2 — write template: qwen"),
    ("recipe_name_is_a_path", "\n  telecom_r32:\n", "\n  ../telecom:\n",
     "recipes.../telecom: a recipe name must be lowercase letters, digits and underscores, starting with a letter "
     "(it becomes recipes/<name>.yaml) — rename it"),
    ("profile_sets_a_derived_key", "    max_samples: 96\n", "    max_samples: 96\n    output_dir: /tmp/x\n",
     "profiles.tiny_full.output_dir: set per recipe by the profile (families.<family>.tiny_model, saves/tiny_full/<recipe>/) — remove it"),
]


def _tree_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "recipes").rglob("*")):
        if path.is_file():
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def _render(matrix: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vslm", "render"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "VSLM_MATRIX": str(matrix)})


def test_shipped_matrix_passes_the_schema():
    data = load_matrix()
    assert set(data) == {"defaults", "families", "profiles", "recipes"}
    assert len(load_recipes()) == len(data["recipes"]) >= 6


@pytest.mark.parametrize("case, old, new, message", BAD, ids=[b[0] for b in BAD])
def test_bad_matrix_is_one_line_naming_recipe_and_key(tmp_path, case, old, new, message):
    assert SHIPPED.count(old) >= 1, f"{case}: the shipped matrix changed; update the test"
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(SHIPPED.replace(old, new, 1), encoding="utf-8")
    before = _tree_digest()
    result = _render(matrix)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {matrix}: {message}"]
    assert _tree_digest() == before, "a rejected matrix must not touch recipes/"


def test_every_problem_is_reported_at_once(tmp_path):
    text = SHIPPED.replace("    learning_rate: 1.0e-4\n", "    lerning_rate: 1.0e-4\n", 1)
    text = text.replace("    datasets: [platform_train]\n", "    datasets: platform_train\n", 1)
    text = text.replace("  seed: 42\n", "  seed: -1\n", 1)
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipes(matrix)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{matrix}: 3 problems (all listed):"
    assert {line.strip() for line in lines[1:]} == {
        f"{matrix}: defaults.seed: -1 is out of range — it must be at least 0, e.g. seed: 42",
        f"{matrix}: recipes.telecom_r32.lerning_rate: unknown key — did you mean learning_rate?",
        f'{matrix}: recipes.platform_classifier.datasets: the text "platform_train" is not a list — write datasets: [platform_train]',
    }


def test_duplicate_key_is_named_with_its_line(tmp_path):
    text = SHIPPED.replace("    num_train_epochs: 5\n", "    num_train_epochs: 5\n    num_train_epochs: 6\n", 1)
    line = text.splitlines().index("    num_train_epochs: 6") + 1
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(text, encoding="utf-8")
    result = _render(matrix)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {matrix}:{line}: duplicate key `num_train_epochs` — each key may appear once in a mapping; keep one"]


def test_missing_or_non_mapping_matrix(tmp_path):
    result = _render(tmp_path / "nowhere.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'nowhere.yaml'}: recipe matrix not found (check $VSLM_MATRIX)"]
    (tmp_path / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    result = _render(tmp_path / "list.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'list.yaml'}: expected a mapping with defaults:, families:, profiles: and recipes:"]


def test_flash_attn_choices_are_llamafactorys():
    from llamafactory.extras.constants import AttentionFunction

    from vslm.recipes.matrix import FLASH_ATTN

    assert FLASH_ATTN == tuple(member.value for member in AttentionFunction)


def test_the_command_lines_profile_choices_are_the_matrix_profiles():
    from vslm.cli import PROFILES

    assert set(PROFILES) == set(load_matrix()["profiles"])


def test_the_matrix_is_read_once_per_version_and_callers_get_their_own_copy(tmp_path, monkeypatch):
    path = tmp_path / "matrix.yaml"
    path.write_text(SHIPPED, encoding="utf-8")
    first = load_matrix(path)
    first["recipes"]["telecom_r32"]["learning_rate"] = 9.0
    assert load_matrix(path)["recipes"]["telecom_r32"]["learning_rate"] == 1.0e-4, "a caller's change stays its own"
    path.write_text(SHIPPED.replace("    learning_rate: 1.0e-4\n", "    learning_rate: 3.0e-4\n", 1), encoding="utf-8")
    assert load_matrix(path)["recipes"]["telecom_r32"]["learning_rate"] == 3.0e-4, "an edited file is read again"

"""Every generated file under recipes/ (searched recursively) matches its template and says it is generated."""


import pytest
import yaml

from conftest import ROOT

from vslm.recipes.matrix import load_recipes
from vslm.recipes.render import drift, generated_files_on_disk, render_all

RENDERED = render_all()
ON_DISK = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "recipes").rglob("*") if p.is_file())


def test_every_file_under_recipes_is_rendered_by_a_template():
    assert ON_DISK, "recipes/ is empty"
    assert set(ON_DISK) == set(RENDERED), "files in recipes/ that no template renders (or missing ones)"
    assert generated_files_on_disk() == set(RENDERED)


@pytest.mark.parametrize("rel", ON_DISK)
def test_recipe_renders_identically(rel):
    assert (ROOT / rel).read_text(encoding="utf-8") == RENDERED[rel], f"{rel} drifted: run `vslm render`"


@pytest.mark.parametrize("rel", [r for r in ON_DISK if r.endswith(".yaml")])
def test_recipe_header_and_sections(rel):
    text = (ROOT / rel).read_text(encoding="utf-8")
    assert "GENERATED from templates/" in text.splitlines()[1] and "do not edit" in text
    assert "llamafactory-cli" in text.split("### model")[0], "run command missing from the header"
    assert "### model" in text
    config = yaml.safe_load(text)
    assert config["template"] in ("qwen", "qwen3")
    if config.get("do_train"):
        for section in ("### method", "### dataset", "### output", "### train"):
            assert section in text


def test_check_reports_drift_and_orphans(tmp_path, monkeypatch):
    files = dict(RENDERED)
    first = next(iter(files))
    files[first] = files[first] + "# tampered\n"
    problems = drift(files)
    assert any(first in p and "differs" in p for p in problems)
    del files[first]
    assert any(first in p and "no recipe renders" in p for p in drift(files))


def test_every_matrix_recipe_has_train_merge_infer_and_vllm_files():
    for recipe in load_recipes().values():
        for suffix in ("", "_merge", "_infer", "_vllm"):
            assert f"recipes/{recipe.name}{suffix}.yaml" in RENDERED
        if recipe["pt"]:
            assert f"recipes/{recipe.name}_pt.yaml" in RENDERED

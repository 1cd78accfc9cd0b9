"""Run records: what a finished stage ran with, written beside its output."""

from __future__ import annotations

import json

from vslm.recipes.matrix import get_recipe
from vslm.recipes.resolve import resolve
from vslm.train.runrecord import write_run_record


def test_run_record_holds_the_resolvers_effective_config_and_the_datasets_fingerprints(tmp_path, monkeypatch):
    tiny = tmp_path / "tiny-build"
    tiny.mkdir()
    (tiny / "vslm_tiny.json").write_text(json.dumps({"name": "tiny-qwen2", "hash": "0123456789ab"}), encoding="utf-8")
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    run = resolve(get_recipe("telecom_r32"), "tiny", {"max_steps": 3, "model_name_or_path": str(tiny)}).stage("train")
    path = write_run_record(tmp_path, command=["llamafactory-cli", "train", *run.argv()], run=run, extra={"stage": "train"})
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["recipe_file"] == "recipes/telecom_r32.yaml"
    assert record["overrides"] == run.overrides and record["overrides"]["max_steps"] == 3
    assert record["effective_config"] == run.config
    assert record["stage"] == "train"
    assert record["base_model"] == {"path": str(tiny), "tiny_build": "0123456789ab"}  # models/<name> is relinked per build
    assert set(record["datasets"]) == {d.strip() for d in run.config["dataset"].split(",")}
    assert all(len(d["sha256"]) == 64 and d["rows"] > 0 for d in record["datasets"].values())


def test_run_record_names_a_base_that_is_not_a_tiny_build_by_its_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    run = resolve(get_recipe("telecom_r32")).stage("train")
    record = json.loads(write_run_record(tmp_path, command=[], run=run).read_text(encoding="utf-8"))
    assert record["base_model"] == {"path": "Qwen/Qwen2.5-1.5B-Instruct"}

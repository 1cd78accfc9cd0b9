"""What a run that trained only part of its data (LlamaFactory's `max_samples`, the demo) is asked: the rows it
trained, counted the way LlamaFactory's own loader counts them, on every recipe's data."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from conftest import ROOT

from vslm.eval.client import prompt_of
from vslm.eval.evaluate import about_trained_facts, read_eval_file, taught_rows, training_rows
from vslm.data.registry import load_registry
from vslm.recipes.matrix import load_matrix, load_recipes
from vslm.recipes.resolve import DEMO_PROFILE

RECIPES = load_recipes()
REGISTRY = load_registry()
DEMO_ROWS = load_matrix()["profiles"][DEMO_PROFILE]["max_samples"]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_partial_run_is_asked_about_the_facts_it_trained_and_every_row_without_a_taught_question(recipe):
    r = RECIPES[recipe]
    rows = read_eval_file(ROOT / REGISTRY[r["eval_set"]]["file_name"])
    assert about_trained_facts(rows, r["datasets"], None) == rows, "a run over all its data is asked every row"
    kept = about_trained_facts(rows, r["datasets"], DEMO_ROWS)
    trained = {prompt_of(t).strip() for t in training_rows(r["datasets"], DEMO_ROWS)} | {
        t["instruction"].strip() for t in training_rows(r["datasets"], DEMO_ROWS)}
    for row in rows:
        about_trained = not row.get("taught_question") or row["taught_question"].strip() in trained
        assert (row in kept) == about_trained, f"{r['eval_set']} row {row['id']}"
    taught = taught_rows(kept, r["datasets"], r["eval_set"])
    assert all(prompt_of(t).strip() in trained for t in taught), "every taught question was among the trained rows"


def test_the_demo_run_keeps_telecoms_out_of_scope_rows_and_the_reworded_rows_of_its_training_rows():
    rows = read_eval_file(ROOT / REGISTRY["telecom_eval"]["file_name"])
    kept = about_trained_facts(rows, ["telecom_train"], DEMO_ROWS)
    linked = [r for r in kept if r.get("taught_question")]
    assert len(kept) - len(linked) == len([r for r in rows if not r.get("taught_question")]) == 21
    assert len(linked) >= 20, "enough taught facts to judge the injection"
    assert len(taught_rows(kept, ["telecom_train"], "telecom_eval")) == len(linked)


@pytest.mark.parametrize("name", sorted({n for r in RECIPES.values() for n in r["datasets"]}))
def test_training_rows_with_max_samples_are_the_rows_llamafactorys_loader_keeps(name, tmp_path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    data_args = DataArguments(template="qwen", dataset_dir=str(ROOT), max_samples=DEMO_ROWS, overwrite_cache=True)
    model_args = SimpleNamespace(cache_dir=str(tmp_path), hf_hub_token=None, ms_hub_token=None, om_hub_token=None)
    training_args = SimpleNamespace(local_process_index=0, dataloader_num_workers=0, seed=42)
    attr = get_dataset_list([name], json.loads((ROOT / "dataset_info.json").read_text(encoding="utf-8")))[0]
    theirs = _load_single_dataset(attr, model_args, data_args, training_args).to_list()
    ours = training_rows([name], DEMO_ROWS)
    if attr.formatting == "alpaca":
        assert [r["_prompt"][-1]["content"] for r in theirs if r["_response"]] == [prompt_of(o) for o in ours]
    else:
        assert [r["_response"][0]["content"] for r in theirs if r["_response"]] == [o["output"] for o in ours]

"""The registry over the whole repository, every dataset's shape, and held-out sets disjoint from training."""

import json
from pathlib import Path

import pytest

from vslm.datacheck import eval_pairs, overlap_problems
from vslm.evaluate import load_eval_rows
from vslm.jsonio import read_jsonl
from vslm.registry import check_registry, load_registry

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = load_registry()


def test_registry_check_over_the_repository():
    from vslm.datacheck import check_repository

    assert check_repository() == []


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_dataset_exists_and_parses(name):
    entry = REGISTRY[name]
    rows = read_jsonl(ROOT / entry["file_name"])
    assert rows, name
    assert check_registry() == []


@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if n.endswith("_eval")))
def test_held_out_sets_are_well_formed(name):
    rows = load_eval_rows(name)
    assert len({r["id"] for r in rows}) == len(rows), "ids must be unique"
    for row in rows:
        if row.get("task", "qa") == "qa":
            assert 1 <= len(row["key_facts"]) <= 4, row["id"]
            for fact in row["key_facts"]:
                assert fact in row["output"], f"{row['id']}: key fact {fact!r} not in the reference"


@pytest.mark.parametrize("train,held_out", eval_pairs())
def test_held_out_set_is_disjoint_from_training(train, held_out):
    train_rows = read_jsonl(ROOT / REGISTRY[train]["file_name"])
    eval_rows = read_jsonl(ROOT / REGISTRY[held_out]["file_name"])
    assert overlap_problems(train_rows, eval_rows, held_out) == []


def test_overlap_check_catches_copies_and_near_copies():
    train = [{"instruction": "光猫LOS灯亮红灯是什么意思？", "input": ""}]
    copy = [{"instruction": "光猫 LOS 灯亮红灯，是什么意思", "input": "", "_line": 1}]
    near = [{"instruction": "光猫LOS灯亮红灯是什么意思呀", "input": "", "_line": 2}]
    far = [{"instruction": "猫上面标着LOS的小灯冒红光代表啥", "input": "", "_line": 3}]
    assert "copies" in overlap_problems(train, copy, "e")[0]
    assert "near-copy" in overlap_problems(train, near, "e")[0]
    assert overlap_problems(train, far, "e") == []


def test_registry_check_reports_missing_file_and_bad_rows(tmp_path):
    (tmp_path / "ok.jsonl").write_text(json.dumps({"instruction": "q", "output": ""}) + "\n", encoding="utf-8")
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "assistant", "content": "x"}]}) + "\n", encoding="utf-8")
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({
        "gone": {"file_name": "missing.jsonl"},
        "empty_answer": {"file_name": "ok.jsonl", "columns": {"prompt": "instruction", "response": "output"}},
        "chat": {"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
    }))
    problems = check_registry(info, tmp_path)
    assert any("missing.jsonl, which does not exist" in p for p in problems)
    assert any("ok.jsonl:1: `output` missing or empty" in p for p in problems)
    assert any("chat.jsonl:1: message 1 has role='assistant', expected 'user'" in p for p in problems)


def test_data_sizes_meet_the_dataset_issue():
    count = lambda name: len(read_jsonl(ROOT / REGISTRY[name]["file_name"]))  # noqa: E731
    assert count("telecom_train") >= 600 and count("telecom_eval") >= 120
    assert count("finance_train") >= 400 and count("finance_eval") >= 100
    assert count("cloud_train") >= 150
    platform = read_jsonl(ROOT / REGISTRY["platform_train"]["file_name"])
    for task in ("scene", "qtype", "qa", "extract"):
        assert sum(r["category"] == task for r in platform) >= 150
    held = read_jsonl(ROOT / REGISTRY["platform_eval"]["file_name"])
    for task in ("scene", "qtype", "qa", "extract"):
        assert sum(r["category"] == task for r in held) >= 40

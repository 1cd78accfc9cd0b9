"""The registry over the whole repository, every dataset's shape, held-out sets disjoint from training, references
written anew, discriminative key facts, taught-question links and labels punctuation does not give away."""

import json

import pytest

from conftest import ROOT

from vslm.data.datacheck import (
    copied_reference_problems,
    eval_pairs,
    free_text_answers,
    generic_fact_problems,
    overlap_problems,
    punctuation_cue_problems,
    taught_link_problems,
    trained_on,
)
from vslm.eval.evaluate import load_eval_rows
from vslm.core.jsonio import read_jsonl
from vslm.eval.metrics import key_fact_recall
from vslm.data.registry import check_registry, load_registry

REGISTRY = load_registry()
CANNED = "您好，请拨打10086或登录中国移动App查询办理，具体以当地为准。"  # hits any fact that is merely common


def rows_of(name):
    return read_jsonl(ROOT / REGISTRY[name]["file_name"])


def test_registry_check_over_the_repository():
    from vslm.data.datacheck import check_repository

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


@pytest.mark.parametrize("train,held_out", eval_pairs())
def test_held_out_references_are_not_training_answers(train, held_out):
    assert copied_reference_problems(rows_of(train), rows_of(held_out), held_out) == []


@pytest.mark.parametrize("train,held_out", eval_pairs())
def test_every_key_fact_row_has_a_discriminative_fact(train, held_out):
    assert generic_fact_problems(rows_of(train), rows_of(held_out), held_out) == []


@pytest.mark.parametrize("held_out,trains", sorted(trained_on().items()), ids=lambda v: v if isinstance(v, str) else "+".join(v))
def test_reworded_rows_name_the_training_question_that_taught_their_facts(held_out, trains):
    train_rows = [row for name in trains for row in rows_of(name)]
    assert taught_link_problems(train_rows, rows_of(held_out), held_out, "+".join(trains)) == []


def test_copy_check_catches_a_training_answer_and_a_near_copy():
    train = rows_of("telecom_train")
    answer = next(r["output"] for r in train if r["instruction"] == "光猫LOS灯亮红灯是什么意思？")
    held = [{"task": "qa", "instruction": "q", "output": answer, "_line": 1},
            {"task": "qa", "instruction": "q", "output": answer.replace("您好，", "你好！"), "_line": 2},
            {"task": "extraction", "instruction": "q", "output": answer, "_line": 3}]
    problems = copied_reference_problems(train, held, "e.jsonl")
    assert problems[0].startswith("e.jsonl:1: reference answer copies a training answer")
    assert problems[1].startswith("e.jsonl:2: reference answer is a near-copy of a training answer (trigram Jaccard 0.")
    assert len(problems) == 2  # an extracted span is a copy by design
    rewritten = next(r for r in rows_of("telecom_eval") if r["id"] == "telecom-e001")
    assert copied_reference_problems(train, [rewritten], "e.jsonl") == []


def test_generic_fact_check_names_the_fact_and_how_common_it_is():
    train = rows_of("telecom_train")
    question = "千里眼离线了找谁修？"
    held = [{"instruction": question, "output": "请拨打10086报障。", "key_facts": ["10086"], "_line": 7},
            {"instruction": question, "output": "请拨打10086报障。", "key_facts": ["10086", "千里眼"], "_line": 8},
            {"instruction": question, "output": "请拨打10086报障。", "key_facts": ["10086", "报障"], "_line": 9},
            {"instruction": question, "output": "抱歉，无法回答。", "key_facts": [], "_line": 10}]
    problems = generic_fact_problems(train, held, "t.jsonl")
    share = sum("10086" in r["output"] for r in train) / len(train)
    assert share >= 0.5
    advice = "add a fact of the reference that only a correct answer contains"
    assert problems == [
        f"t.jsonl:7: only generic key facts (`10086` is in {share:.0%} of the training answers); {advice}",
        f"t.jsonl:8: only generic key facts (`10086` is in {share:.0%} of the training answers; `千里眼` is in the question); {advice}",
    ]


def test_generic_share_counts_written_answers_not_labels_or_spans():
    platform = rows_of("platform_train")
    answers = free_text_answers(platform, rows_of("platform_eval"))
    assert sorted(answers) == sorted(r["output"] for r in platform if r["category"] == "qa")


def test_taught_link_check_catches_a_wrong_link_and_an_untaught_fact():
    train = rows_of("platform_train")
    row = next(r for r in rows_of("platform_eval") if r["id"] == "platform-e101")
    assert taught_link_problems(train, [row], "p.jsonl", "platform_train") == []
    bare = dict(row, taught_question=row["taught_question"].split("\n")[1])
    untaught = dict(row, key_facts=["创建服务", "质检报告"])
    unlinked = {k: v for k, v in row.items() if k != "taught_question"}
    problems = taught_link_problems(train, [bare, untaught, unlinked], "p.jsonl", "platform_train")
    line = row["_line"]
    wrong = bare["taught_question"]
    assert problems[0].startswith(f"p.jsonl:{line}: `taught_question` {wrong!r} is not a training prompt of platform_train")
    assert problems[1].startswith(f"p.jsonl:{line}: key fact(s) `质检报告` are not in the answer to its `taught_question`")
    assert problems[2].startswith(f"p.jsonl:{line}: a reworded row needs `taught_question`")


def test_punctuation_cue_check_flags_labels_a_question_mark_tells_apart():
    train, held = rows_of("platform_train"), rows_of("platform_eval")
    assert punctuation_cue_problems(train, held, "p.jsonl") == []
    asked = [dict(r, input=r["input"].rstrip("？") + "？") if r["output"] == "问题回答" else r for r in train]
    assert punctuation_cue_problems(asked, held, "p.jsonl") == [(
        "p.jsonl: a question mark is in 100% of the `问题回答` prompts and 0% of the `任务处理` prompts, so a classifier "
        "can learn the punctuation instead of the meaning; write `问题回答` rows without one (users often leave it out)")]
    tasks = [dict(r, input=r["input"] + "？") if r["output"] == "任务处理" else r for r in asked]
    assert punctuation_cue_problems(tasks, held, "p.jsonl") == []


def test_a_canned_answer_no_longer_passes_telecom_rows():
    qa = [r for r in rows_of("telecom_eval") if r.get("task", "qa") == "qa"]
    recall = [key_fact_recall(CANNED, r["key_facts"]) for r in qa]
    assert sum(recall) / len(recall) < 0.05, "a canned 10086/App sentence must not score on the held-out set"
    assert 1.0 not in recall


def test_telecom_has_out_of_scope_rows_and_every_touched_row_says_what_it_measures():
    telecom = rows_of("telecom_eval")
    refusals = [r for r in telecom if r.get("task") == "refusal"]
    assert len(refusals) >= 20 and all(r["measures"] == "unanswerable" and not r.get("key_facts") for r in refusals)
    assert any(r["id"] == "telecom-e139" for r in refusals), "the lottery question is a refusal, not QA"
    for name in ("telecom_eval", "platform_eval"):
        for row in rows_of(name):
            if row.get("task", "qa") == "qa":
                assert row["measures"] == "reworded" and row["taught_question"], row["id"]


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
    assert any("chat.jsonl:1: turn 1 of `messages` has role='assistant', expected 'user'" in p and "(converter.py)" in p
               for p in problems)


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

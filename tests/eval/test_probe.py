"""`vslm probe`: the base model answers each taught fact's question; each fact is labelled Known/Unknown exactly once,
the labels can be written back onto the held-out rows (only with --replace over earlier labels), re-runs change
nothing. Against a scripted endpoint (answers known in advance) and against the served tiny base (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, requests, run
from vslm.eval.evaluate import read_eval_file, training_rows
from vslm.recipes.matrix import get_recipe
from vslm.eval.metrics import aggregate, key_fact_recall, measure_of, score_row

VSLM = [sys.executable, "-m", "vslm"]
RECIPE = get_recipe("telecom_r32")
LIMIT = 12


def eval_copy(tmp_path: Path, unlink: int = 3) -> Path:
    """The recipe's held-out file with the first `unlink` taught_question links removed (the probe then finds the
    training question by the key facts, or asks the held-out question)."""
    rows = read_eval_file(ROOT / "datasets" / "telecom" / "telecom_eval.jsonl")
    for row in [r for r in rows if r.get("taught_question")][:unlink]:
        del row["taught_question"]
    path = tmp_path / "telecom_eval.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def probe_cmd(base_url: str, path: Path, out: Path, *flags: str) -> list[str]:
    return VSLM + ["probe", "telecom_r32", "--base-url", base_url, "--model", "base", "--eval-file", str(path), "--out", str(out),
                   "--limit", str(LIMIT), "--max-tokens", "24", *flags]


def check_invariants(path: Path, before: list[str], out: Path) -> dict:
    """Every taught fact among the probed rows labelled exactly once, each label what its answer shows, the labels on
    exactly those rows, every other line of the file unchanged."""
    data = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    rows = read_eval_file(path, keep_lines=True)
    facts = [r["id"] for r in rows[:LIMIT] if r.get("task", "qa") == "qa" and measure_of(r) == "reworded" and r.get("key_facts")]
    assert facts, "the probed rows hold taught facts"
    assert [f["id"] for f in data["facts"]] == facts, "every fact exactly once, in file order"
    for fact in data["facts"]:
        assert fact["known"] is (key_fact_recall(fact["answer"], fact["key_facts"]) == 1.0)
    assert data["counts"] == {"facts": len(facts), "known": sum(f["known"] for f in data["facts"]),
                              "unknown": sum(not f["known"] for f in data["facts"])}
    labels = {f["id"]: f["known"] for f in data["facts"]}
    after = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(after) == len(before)
    for row, old, new in zip(rows, before, after):
        if row["id"] in labels:
            assert row["known"] is labels[row["id"]]
            assert {k: v for k, v in json.loads(new).items() if k != "known"} == json.loads(old)
        else:
            assert new == old and "known" not in row
    return data


def test_probe_against_a_scripted_base_labels_writes_back_and_refuses_to_overwrite(scripted_server, tmp_path):
    path = eval_copy(tmp_path)
    rows = read_eval_file(path)[:LIMIT]
    linked = [r for r in rows if r.get("taught_question")]
    train = {t["instruction"]: t["output"] for t in training_rows(RECIPE["datasets"])}
    knows = linked[0]  # the scripted base answers this one's training question with the training answer: Known
    server = scripted_server(answers={knows["taught_question"]: train[knows["taught_question"]]}, default="我不确定。")
    before = path.read_text(encoding="utf-8").splitlines(keepends=True)
    out = tmp_path / "probe"
    result = run(probe_cmd(server.base_url, path, out, "--write-labels"))
    assert result.returncode == 0, result.stderr[-2000:]
    data = check_invariants(path, before, out)
    by_id = {f["id"]: f for f in data["facts"]}
    assert by_id[knows["id"]]["known"] is True and by_id[knows["id"]]["question_source"] == "taught_question"
    assert sum(f["known"] for f in data["facts"]) == 1, "every other answer is 我不确定。: Unknown"
    unlinked = [f for f in data["facts"] if f["question_source"] != "taught_question"]
    assert unlinked and all(f["training_source"] or f["question_source"] == "held-out question" for f in unlinked)
    asked = {r["user"] for r in requests(server)}
    assert {r["taught_question"] for r in linked} <= asked, "linked facts are asked with their training question"
    assert f"{len(data['facts'])} taught facts: 1 Known" in result.stdout

    labelled = path.read_bytes()
    again = run(probe_cmd(server.base_url, path, out, "--write-labels"))
    lines = [l for l in again.stderr.splitlines() if l.strip()]
    assert again.returncode == 1 and lines[-1].startswith("error: ") and "already has `known`" in lines[-1] and "--replace" in lines[-1]
    assert f"{path.name}:" in lines[-1] or str(path) in lines[-1]
    assert path.read_bytes() == labelled, "nothing is replaced without --replace"
    n = len(requests(server))
    again = run(probe_cmd(server.base_url, path, out, "--write-labels", "--replace"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert path.read_bytes() == labelled, "a re-run writes the same labels"
    assert len(requests(server)) == n, "answers come from the cache"
    assert "(0 changed)" in again.stdout

    # the report's recall on Unknown facts comes from these labels
    rows = read_eval_file(path)[:LIMIT]
    qa = [r for r in rows if "known" in r]
    summary = aggregate(qa, [score_row(r, r["output"], text_metrics=False) for r in qa])["by_measure"]["reworded"]
    assert summary["n_unknown"] == len(qa) - 1 and summary["n_known"] == 1 and summary["key_fact_recall_unknown"] == 1.0


def test_probe_without_taught_facts_is_a_one_line_error(scripted_server, tmp_path):
    path = tmp_path / "refusals_eval.jsonl"
    path.write_text(json.dumps({"id": "x", "task": "refusal", "instruction": "彩票号码？", "output": "抱歉，这超出了我的服务范围。"},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    server = scripted_server()
    result = run(probe_cmd(server.base_url, path, tmp_path / "out"))
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert result.returncode == 1 and lines[-1].startswith("error: ") and "no taught facts to probe" in lines[-1]
    assert requests(server) == [], "nothing is asked"


@pytest.fixture(scope="module")
def tiny_base(tiny_qwen2, tmp_path_factory):
    from vslm.serve.servers import free_port, llamafactory_api

    server = llamafactory_api(ROOT / "recipes" / "telecom_r32_infer.yaml",
                              [f"model_name_or_path={tiny_qwen2}", "adapter_name_or_path=null"],
                              free_port(), tmp_path_factory.mktemp("probe-api") / "api.log", name="base")
    server.start(timeout=300)
    yield server
    server.stop()


@pytest.mark.slow
def test_probe_against_the_served_tiny_base(tiny_base, tmp_path):
    path = eval_copy(tmp_path)
    before = path.read_text(encoding="utf-8").splitlines(keepends=True)
    out = tmp_path / "probe"
    first = run(probe_cmd(tiny_base.base_url, path, out, "--write-labels"))
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    data = check_invariants(path, before, out)
    assert data["model"] == "base" and data["sampling"]["temperature"] == 0.0
    labelled = path.read_bytes()
    cached = (out / "cache.jsonl").read_text(encoding="utf-8")
    again = run(probe_cmd(tiny_base.base_url, path, out, "--write-labels", "--replace"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert path.read_bytes() == labelled, "re-running the probe writes the same labels"
    assert (out / "cache.jsonl").read_text(encoding="utf-8") == cached, "and asks nothing again"
    second = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert [(f["id"], f["known"], f["answer"]) for f in second["facts"]] == [(f["id"], f["known"], f["answer"]) for f in data["facts"]]

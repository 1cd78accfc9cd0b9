"""The retrieval baseline and the answer verifier on the project's own documents and held-out sets, and `vslm eval
--rag` against a real scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, requests

from vslm.eval.client import prompt_of
from vslm.eval.evaluate import evaluate, load_eval_rows, training_rows
from vslm.core.errors import DataError
from vslm.recipes.matrix import get_recipe, load_recipes
from vslm.eval.metrics import normalize
from vslm.eval import rag
from vslm.eval.verify import THRESHOLD, check_answer, verify

EVAL_SETS = ["finance_eval", "telecom_eval", "cloud_eval", "persona_eval", "platform_eval", "general_eval"]
RECIPE_OF = {"finance_eval": "finance_rules", "telecom_eval": "telecom_r32", "cloud_eval": "cloud_service",
             "persona_eval": "persona_base", "platform_eval": "platform_classifier"}


@pytest.fixture(autouse=True)
def saves(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path / "saves"))
    return tmp_path / "saves"


def qa_rows(name: str) -> list[dict]:
    return [r for r in load_eval_rows(name) if r.get("task", "qa") == "qa"]


def hits_at(index: rag.Index, rows: list[dict], k: int) -> int:
    found, _ = rag.retrieve(index, rows, k)
    return sum(bool(rag.is_hit(r, rag.passage_texts(found)[r["id"]])) for r in rows)


def test_finance_retrieval_hit_rate_is_the_measured_one():
    """Character uni+bigram BM25 over the rules document's heading sections (distillation's chunker): top-3 finds
    every key fact for at least 85% of finance_eval's QA rows; more passages never find less; all passages find
    exactly the rows whose facts are verbatim in the document (the ceiling)."""
    index = rag.load_index(get_recipe("finance_rules"))
    rows = qa_rows("finance_eval")
    document = normalize((ROOT / "datasets/finance/reimbursement_rules.md").read_text(encoding="utf-8"))
    ceiling = sum(all(normalize(f) in document for f in r["key_facts"]) for r in rows)
    h1, h3, h5, h_all = (hits_at(index, rows, k) for k in (1, 3, 5, len(index.passages)))
    assert len(rows) == 118 and h3 / len(rows) >= 0.85, (h1, h3, h5)
    assert h1 <= h3 <= h5 <= h_all == ceiling and ceiling < len(rows)
    assert rag.DEFAULT_K == 3


def test_passages_are_distillations_chunks_with_their_heading_trail():
    from vslm.data.distill import plan_chunks

    passages = rag.knowledge_passages(get_recipe("finance_rules"))
    _, units, _ = plan_chunks(ROOT / "datasets/finance/reimbursement_rules.md", rag.CHUNK_SIZE, rag.CHUNK_OVERLAP)
    assert [p.key for p in passages] == [(u.heading + "\n" if u.heading else "") + u.text for u in units]
    lodging = next(p for p in passages if "第三节 住宿费" in p.text.splitlines()[0])
    assert lodging.text.splitlines()[0] == "东岚大学经费报销细则 · 第二章 差旅费 · 第三节 住宿费"
    assert lodging.source.startswith("datasets/finance/reimbursement_rules.md#")


def test_every_recipe_has_a_knowledge_base_and_qa_only_domains_use_their_training_answers():
    import csv

    for name, recipe in load_recipes().items():
        sources, what = rag.knowledge_sources(recipe)
        passages = rag.knowledge_passages(recipe)
        assert passages and all(p.text.strip() for p in passages), name
        if recipe["domain"] in ("telecom", "platform"):
            assert "no documents" in what and all(p.text.startswith("问：") and "\n答：" in p.text for p in passages)
            answers = {t["output"] for t in training_rows(recipe["datasets"])}
            assert {p.text.split("\n答：", 1)[1] for p in passages} == answers, name
    cloud = rag.knowledge_passages(get_recipe("cloud_service"))
    with (ROOT / "datasets/cloud/cloud_service.csv").open(encoding="utf-8", newline="") as f:
        assert len(cloud) == len(list(csv.DictReader(f)))
    assert not any("远程办公" in p.text for p in cloud), "the internal HR rules are not the customer-service knowledge"


def test_index_is_stored_beside_the_saves_reused_and_rebuilt_when_its_source_changes(tmp_path, saves, monkeypatch):
    doc = tmp_path / "rules.md"
    shutil.copy(ROOT / "datasets/finance/reimbursement_rules.md", doc)
    monkeypatch.setitem(rag.DOCUMENTS, "finance", [str(doc)])
    recipe = get_recipe("finance_rules")
    first = rag.load_index(recipe, "tiny")
    assert first.where.parent == saves / "tiny" / "finance_rules" / "rag"
    meta = json.loads((first.where / "meta.json").read_text(encoding="utf-8"))
    assert meta["passages"] == len(first.passages) and meta["tokens"] == "character unigrams + bigrams"
    stamp = (first.where / "passages.jsonl").stat().st_mtime_ns
    again = rag.load_index(recipe, "tiny")
    assert again.where == first.where and (first.where / "passages.jsonl").stat().st_mtime_ns == stamp
    assert [p.text for p in again.search("住宿费标准", 3)] == [p.text for p in first.search("住宿费标准", 3)]
    doc.write_text(doc.read_text(encoding="utf-8") + "\n## 附则\n\n第九十九条 本细则自2099年1月1日起施行。\n", encoding="utf-8")
    changed = rag.load_index(recipe, "tiny")
    assert changed.where != first.where and first.where.is_dir(), "a new fingerprint; the old index is not overwritten"
    assert any("第九十九条" in p.text for p in changed.search("第九十九条什么时候施行", 1))
    assert not list(first.where.parent.glob(".building-*"))


def test_templates_need_passages_and_question():
    assert rag.check_template(rag.TEMPLATE) == rag.TEMPLATE
    for bad in ("{passages} only", "{question} {passages} {extra}", "{passages {question}"):
        with pytest.raises(DataError, match="--rag-template"):
            rag.check_template(bad)
    row = {"id": "x", "instruction": "问题", "input": "补充"}
    asked = rag.with_passages([row], {"x": ["甲", "乙"]})[0]
    assert asked["instruction"].endswith("【问题】\n问题\n补充") and "[1] 甲\n\n[2] 乙" in asked["instruction"] and asked["input"] == ""


# ---------------------------------------------------------------- the verifier on every eval set's rows


def test_verifier_reads_the_numbers_and_names_of_every_reference_answer():
    """Every reference answer of every eval set is consistent with itself, and changing one of its numbers to a
    number that is nowhere in the row makes that number unsupported; every refusal reference scores 1."""
    mutated = 0
    for name in EVAL_SETS:
        for row in load_eval_rows(name):
            if row.get("task") == "classification" or row.get("task") == "extraction":
                continue
            answer = row["output"]
            own = check_answer(answer, [answer], prompt_of(row))
            assert own["consistency"] == 1.0, (name, row["id"], own)
            if row.get("task") == "refusal":
                assert own["basis"] == "refusal", (name, row["id"])
                continue
            match = next((m for m in re.finditer(r"(?<![\d.])\d+(?![\d.])", answer)
                          if not re.match(r"\d{1,2}[.、)）](?!\d)", answer[m.start():])), None)
            if match is None:
                continue
            fresh = str(int(match.group()) * 10 + 7)
            while fresh in answer + prompt_of(row):
                fresh += "7"
            wrong = answer[:match.start()] + fresh + answer[match.end():]
            check = check_answer(wrong, [answer], prompt_of(row))
            assert check["consistency"] < 1.0 and any(fresh in u for u in check["unsupported"]), (name, row["id"], wrong, check)
            mutated += 1
    assert mutated >= 150, mutated


@pytest.mark.parametrize("eval_set", list(RECIPE_OF))
def test_verifier_flags_answers_to_other_questions_and_rarely_the_reference(eval_set):
    """On the recipe's own retrieval: reference answers whose facts were retrieved are flagged at most 10% of the
    time; the reference answer of another question (a fluent, confident, wrong answer) at least 60%."""
    recipe = get_recipe(RECIPE_OF[eval_set])
    rows = qa_rows(eval_set)
    found, _ = rag.retrieve(rag.load_index(recipe), rows, rag.DEFAULT_K)
    passages = rag.passage_texts(found)
    hit = [r for r in rows if rag.is_hit(r, passages[r["id"]])]
    gold = verify(hit, {r["id"]: r["output"] for r in hit}, passages)
    other = verify(rows, {r["id"]: rows[(i + 7) % len(rows)]["output"] for i, r in enumerate(rows)}, passages)
    false_alarms = sum(v["flagged"] for v in gold.values()) / len(gold)
    caught = sum(v["flagged"] for v in other.values()) / len(other)
    assert false_alarms <= 0.10 and caught >= 0.60, (eval_set, false_alarms, caught)


def test_invented_numbers_are_flagged_and_a_refusal_is_not():
    passages = ["第十三条 出差人员住宿费在每人每天500元标准内据实报销。"]
    assert check_answer("住宿费每天500元以内据实报销（第十三条）。", passages)["consistency"] == 1.0
    wrong = check_answer("住宿费每天800元以内据实报销，需提前3天申请。", passages)
    assert wrong["consistency"] < THRESHOLD
    assert set(wrong["unsupported"]) == {"800元", "3天"}
    assert check_answer("抱歉，细则中没有关于这个问题的规定，我无法回答。", passages) == {
        "consistency": 1.0, "claims": 0, "unsupported": [], "basis": "refusal"}
    assert check_answer("", passages)["consistency"] == 0.0
    assert check_answer("请拨打KTMY开通。", ["发送KTMY到10086开通。"])["consistency"] == 1.0
    assert check_answer("请发送GJMY开通。", ["发送KTMY到10086开通。"])["unsupported"] == ["GJMY"]


# ---------------------------------------------------------------- evaluate with passages, on a real HTTP server

HALLUCINATION = "可以报销，每人每天补助9999元，凭发票到财务处领取。"
REFUSAL = "抱歉，资料里没有相关规定，我无法回答。"


def finance_sample() -> list[dict]:
    rows = load_eval_rows("finance_eval")
    return [r for r in rows if r.get("task") == "qa"][:6] + [r for r in rows if r.get("task") == "refusal"][:4]


def test_evaluate_with_passages_asks_with_them_scores_the_rows_as_written_and_verifies(scripted_server, tmp_path):
    rows = finance_sample()
    found, _ = rag.retrieve(rag.load_index(get_recipe("finance_rules")), rows, 3)
    passages = rag.passage_texts(found)
    server = scripted_server()  # echoes the prompt: with passages the echo carries every retrieved fact
    common = dict(base_url=server.base_url, model="base", system="sys", max_tokens=32, passages=passages)
    plain = evaluate(rows, cache_path=tmp_path / "plain.jsonl", **common)
    with_rag = evaluate(rows, cache_path=tmp_path / "rag.jsonl", template=rag.TEMPLATE, **common)
    asked = [r["user"] for r in requests(server)]
    assert sum("【资料】" in u for u in asked) == len(rows) and sum("【资料】" not in u for u in asked) == len(rows)
    for row in rows:
        assert passages[row["id"]][0] in with_rag["answers"][row["id"]]
        assert with_rag["answers"][row["id"]].endswith(prompt_of(row))
    qa = [r for r in rows if r["task"] == "qa"]
    hits = sum(bool(rag.is_hit(r, passages[r["id"]])) for r in qa)
    assert sum(with_rag["scores"][r["id"]]["key_fact_recall"] == 1.0 for r in qa) >= hits
    assert with_rag["prompt"]["chars"] > plain["prompt"]["chars"] + 500
    assert with_rag["rag"]["template"] == rag.TEMPLATE and "rag" not in plain
    assert plain["timing"]["asked"] == len(rows) and with_rag["verification"]["n"] == len(rows)
    again = evaluate(rows, cache_path=tmp_path / "rag.jsonl", template=rag.TEMPLATE, **common)
    assert again["answers"] == with_rag["answers"] and again["timing"]["asked"] == 0


def test_verification_catches_the_hallucinations_and_regeneration_answers_from_the_passages(scripted_server, tmp_path):
    rows = finance_sample()
    unanswerable = [r for r in rows if r["task"] == "refusal"]
    found, _ = rag.retrieve(rag.load_index(get_recipe("finance_rules")), rows, 3)
    passages = rag.passage_texts(found)
    # with passages in the prompt the scripted model refuses; without, it invents a number for the unanswerable rows
    answers = {"【资料】": REFUSAL, **{prompt_of(r): HALLUCINATION for r in unanswerable}}
    server = scripted_server(answers=answers)
    result = evaluate(rows, base_url=server.base_url, model="base", system=None, cache_path=tmp_path / "a.jsonl", max_tokens=32,
                      passages=passages, regenerate_below=THRESHOLD)
    v = result["verification"]
    assert v["hallucinations"] == 0, "after regeneration the unanswerable rows are refused"
    assert v["regenerated"] >= len(unanswerable) and set(result["first_answers"]) >= {r["id"] for r in unanswerable}
    regenerated = [u for u in (q["user"] for q in requests(server)) if "【资料】" in u]
    assert len(regenerated) == v["regenerated"] and all(u.startswith(rag.REGENERATE_TEMPLATE[:20]) for u in regenerated)
    assert "rag" not in result, "the first answers were asked without passages"
    for r in unanswerable:
        assert result["first_answers"][r["id"]] == HALLUCINATION and result["answers"][r["id"]] == REFUSAL
        assert result["scores"][r["id"]]["correct"] and result["scores"][r["id"]]["regenerated"]
    flagged_only = evaluate(rows, base_url=server.base_url, model="base", system=None, cache_path=tmp_path / "b.jsonl",
                            max_tokens=32, passages=passages)
    f = flagged_only["verification"]
    assert (f["hallucinations"], f["caught"], f["catch_rate"], f["regenerated"]) == (len(unanswerable), len(unanswerable), 1.0, 0)
    assert all("9999元" in flagged_only["scores"][r["id"]]["unsupported"] for r in unanswerable)


def vslm(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vslm", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_cli_eval_rag_writes_retrieval_and_verification(scripted_server, tmp_path, saves):
    server = scripted_server()
    out = tmp_path / "base-rag.json"
    result = vslm("eval", "finance_rules", "--base-url", server.base_url, "--limit", "12", "--rag", "--rag-k", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["retrieval"]["k"] == 2 and all(len(v) == 2 for v in saved["retrieval"]["retrieved"].values())
    assert saved["verification"]["n"] == 12 and "retrieval: top-2 hit rate" in result.stdout
    assert all("【资料】" in r["user"] for r in requests(server))
    assert list((saves / "finance_rules" / "rag").iterdir()), "the index is stored beside the recipe's saves"
    template = tmp_path / "t.txt"
    template.write_text("Context:\n{passages}\nQ: {question}\nA:", encoding="utf-8")
    custom = vslm("eval", "finance_rules", "--base-url", server.base_url, "--limit", "2", "--rag", "--rag-template", str(template),
                  "--out", str(tmp_path / "custom.json"))
    assert custom.returncode == 0, custom.stderr[-2000:]
    assert requests(server)[-1]["user"].startswith("Context:\n[1] ")
    template.write_text("{passages} only", encoding="utf-8")
    bad = vslm("eval", "finance_rules", "--base-url", server.base_url, "--rag", "--rag-template", str(template))
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: --rag-template must contain")
    assert len(bad.stderr.strip().splitlines()) == 1

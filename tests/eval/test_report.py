"""The before/after report on the project's own held-out rows, with answers that need no server: the floors sit
next to base and fine-tuned, a fine-tuned model at a floor is called out first, each section says what it measures."""

from __future__ import annotations

import json

import pytest

from vslm.eval.evaluate import fixed_evaluation, load_eval_rows, nearest_training_answers, taught_rows, training_rows
from vslm.recipes.matrix import get_recipe
from vslm.eval.report import chart_groups, write_report

RECIPE = get_recipe("telecom_r32")


@pytest.fixture(scope="module")
def sets():
    rows = load_eval_rows(RECIPE["eval_set"])
    return {"rows": rows, "taught": taught_rows(rows, RECIPE["datasets"], RECIPE["eval_set"]),
            "general": load_eval_rows("general_eval", default_measure="general")}


def run(tmp_path, sets, answer_of, base_answer=""):
    """Report with base answering `base_answer` everywhere and fine-tuned answering answer_of(row)."""
    def pair(rows):
        return {"base": fixed_evaluation("base", rows, {r["id"]: base_answer for r in rows}),
                "fine-tuned": fixed_evaluation("fine-tuned", rows, {r["id"]: answer_of(r) for r in rows})}

    results = pair(sets["rows"])
    results["base"]["summary"]["overall"]["heldout_loss"] = 7.9
    results["fine-tuned"]["summary"]["overall"]["heldout_loss"] = 7.6
    files = write_report(tmp_path, title="telecom_r32: base vs fine-tuned", rows=sets["rows"], results=results,
                         taught=pair(sets["taught"]) if sets["taught"] else None, taught_rows=sets["taught"] or None,
                         general=pair(sets["general"]), general_rows=sets["general"],
                         context={"recipe": RECIPE.name, "eval_set": RECIPE["eval_set"], "max_tokens": 96, "system": RECIPE["system"]})
    return files, files["md"].read_text(encoding="utf-8"), json.loads(files["json"].read_text(encoding="utf-8"))


def test_a_fine_tuned_model_that_only_says_the_best_canned_answer_is_called_out_first(tmp_path, sets):
    canned = run(tmp_path / "probe", sets, lambda r: "")[2]["floors"]["held-out"]["constant"]["chosen"]["reworded"]["answer"]
    files, md, data = run(tmp_path / "report", sets, lambda r: canned)
    train_answers = {t["output"] for t in training_rows(RECIPE["datasets"])}
    assert canned in train_answers, "the constant answer is one of the recipe's training answers"
    lines = md.splitlines()
    assert lines[2].startswith("**Floors check — fine-tuned is at or below a floor"), lines[:4]
    assert any(l.startswith("- **reworded**: key-fact recall ") and "≤ constant" in l for l in lines[3:12])
    assert data["callouts"] and all("fine-tuned" in c for c in data["callouts"])
    reworded = md.split("## Reworded questions")[1].split("\n## ")[0]
    row = next(l for l in reworded.splitlines() if l.startswith("| key-fact recall |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == cells[5], "fine-tuned equals the constant floor it repeats"
    assert "| hallucination rate (should refuse) |" in md and "## Unanswerable questions" in md
    assert "## General ability — forgetting check" in md and "«" + canned[:20] in md
    assert "loss on the held-out reference answers" in md and "unseen references" not in md
    assert files["png"].stat().st_size > 0
    for group, summaries in chart_groups(data_sets(data, sets)):
        assert {"echo", "constant", "base", "fine-tuned"} <= set(summaries), group
        assert ("lookup" in summaries) == (group != "taught"), group


def test_a_fine_tuned_model_that_answers_like_a_search_of_its_training_rows_is_called_out_at_the_lookup_floor(tmp_path, sets):
    """Every held-out row answered with the answer of the most similar training question: the report's lookup floor,
    which the model then ties on every number, and the first lines say so."""
    asked = sets["rows"] + sets["general"]
    lookup = nearest_training_answers(asked, training_rows(RECIPE["datasets"]))
    _, md, data = run(tmp_path, sets, lambda r: lookup.get(r["id"], r["output"]))
    assert data["floors"]["held-out"]["lookup"]["answers"] == {r["id"]: lookup[r["id"]] for r in sets["rows"]}
    reworded = md.split("## Reworded questions")[1].split("\n## ")[0]
    assert reworded.splitlines()[4].endswith("| echo floor | constant floor | lookup floor |")
    row = next(l for l in reworded.splitlines() if l.startswith("| key-fact recall |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == cells[6] and 0.3 < float(cells[6]) < 1.0, "fine-tuned ties the lookup floor it repeats"
    assert any(l.startswith("- **reworded**: key-fact recall ") and f"lookup {cells[6]}" in l for l in md.splitlines()[3:12])
    assert "- lookup: searches 672 training rows" in md


def data_sets(data, sets):
    """The report's sets rebuilt from report.json, as plot_bars gets them."""
    out = {"held-out": {"rows": sets["rows"], "results": data["results"], "floors": data["floors"]["held-out"]},
           "general": {"rows": sets["general"], "results": data["general"], "floors": data["floors"]["general"]}}
    if data["taught"]:
        out["taught"] = {"rows": sets["taught"], "results": data["taught"], "floors": data["floors"]["taught"]}
    return out


def test_reference_answers_clear_every_floor_and_sections_say_what_they_measure(tmp_path, sets):
    _, md, data = run(tmp_path, sets, lambda r: r["output"])
    assert md.splitlines()[2].startswith("**Floors check:** fine-tuned is above the echo, constant-answer and lookup floors"), md[:500]
    assert data["callouts"] == []
    if sets["taught"]:
        taught = md.split("## Taught questions — injection check")[1].split("\n## ")[0]
        assert "saw these questions in training" in taught and "never that the model generalises" in taught
        assert "| key-fact recall | 0.000 | 1.000 |" in taught
    for heading in ("## What each number measures", "## By category", "## Floors", "## Side by side"):
        assert heading in md
    by_category = md.split("## By category")[1].split("\n## ")[0]
    assert "| – | – |" not in by_category


def test_recall_on_unknown_facts_is_reported_when_probe_labels_exist(tmp_path, sets):
    labelled = [dict(r, known=i % 2 == 0) if r.get("task", "qa") == "qa" else r for i, r in enumerate(sets["rows"])]
    facts = {r["id"] for r in labelled if r.get("known") is False}
    _, md, data = run(tmp_path, dict(sets, rows=labelled), lambda r: r["output"] if r["id"] in facts else "")
    reworded = data["results"]["fine-tuned"]["summary"]["by_measure"]["reworded"]
    assert reworded["key_fact_recall_unknown"] == 1.0 and reworded["key_fact_recall_known"] == 0.0
    assert reworded["n_unknown"] == len(facts)
    assert "| key-fact recall on Unknown facts (the base did not know them: `vslm probe`) | 0.000 | 1.000 |" in md


def test_fine_tune_or_retrieve_shows_four_columns_with_floors_hit_rate_and_verification(tmp_path, monkeypatch):
    """finance_eval answered four ways with answers that need no server: base says nothing, base + RAG answers with
    the retrieved passages themselves, fine-tuned with the references, fine-tuned + RAG with the references except on
    the unanswerable rows, where it invents a number — the verifier must catch every one of those."""
    from vslm.eval import rag
    from vslm.eval.verify import verification_summary, verify

    monkeypatch.setenv("VSLM_SAVES", str(tmp_path / "saves"))
    recipe = get_recipe("finance_rules")
    rows = load_eval_rows(recipe["eval_set"])
    index = rag.load_index(recipe, "tiny")
    found, ms = rag.retrieve(index, rows, 3)
    passages = rag.passage_texts(found)

    def run_of(name, answer_of, chars):
        ev = fixed_evaluation(name, rows, {r["id"]: answer_of(r) for r in rows})
        checks = verify(rows, ev["answers"], passages)
        for row_id, check in checks.items():
            ev["scores"][row_id].update(check)
        ev.update(verification=verification_summary(rows, ev["scores"]), prompt={"chars": chars, "tokens": None})
        return ev

    invented = "可以报销，每人每天补助9999元。"
    results = {"base": run_of("base", lambda r: "", 40.0), "fine-tuned": run_of("fine-tuned", lambda r: r["output"], 40.0)}
    with_rag = {"base + RAG": run_of("base + RAG", lambda r: "\n".join(passages[r["id"]]), 940.0),
                "fine-tuned + RAG": run_of("fine-tuned + RAG", lambda r: invented if r["task"] == "refusal" else r["output"], 940.0)}
    retrieval = rag.retrieval_record(index, rows, found, 3, ms, rag.TEMPLATE)
    files = write_report(tmp_path / "report", title="finance_rules: base vs fine-tuned", rows=rows, results=results,
                         rag={"results": with_rag, "retrieval": retrieval},
                         context={"recipe": recipe.name, "eval_set": recipe["eval_set"], "max_tokens": 96, "system": recipe["system"]})
    md = files["md"].read_text(encoding="utf-8")
    section = md.split("## Fine-tune or retrieve?")[1].split("\n## ")[0]
    header = "| metric | base | base + RAG | fine-tuned | fine-tuned + RAG | echo floor | constant floor | lookup floor |"
    assert section.count(header) == 3, "reworded, unanswerable and overall"
    reworded = section.split("**reworded**")[1].split("**unanswerable**")[0]
    cells = [c.strip() for c in next(l for l in reworded.splitlines() if l.startswith("| key-fact recall |")).strip("|").split("|")]
    assert cells[1] == "0.000" and cells[3] == cells[4] == "1.000" and 0.85 < float(cells[2]) < 1.0
    assert float(cells[5]) < 1.0 and float(cells[6]) < 1.0 and float(cells[7]) < 1.0, "the floors sit in the same table"
    unanswerable = section.split("**unanswerable**")[1].split("**overall**")[0]
    assert "| hallucination rate (should refuse) | 1.000 | 1.000 | 0.000 | 1.000 |" in unanswerable
    assert "hit rate (the top-3 passages contain every key fact of the row): 0.856 (101 of 118 QA rows" in section
    assert "base → base + RAG: prompt 40 → 940 chars per question (+900)" in section
    verification = md.split("## Answer verification")[1].split("\n## ")[0]
    line = next(l for l in verification.splitlines() if l.startswith("| fine-tuned + RAG |"))
    assert "| 10 | 10 | 1.000 |" in line, line
    assert "Flagged answers of **fine-tuned + RAG**" in verification and "9999元" in verification
    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert set(data["rag"]["results"]) == {"base + RAG", "fine-tuned + RAG"} and data["rag"]["retrieval"]["hit_rate"] == 0.8559
    assert data["rag"]["results"]["fine-tuned + RAG"]["verification"]["catch_rate"] == 1.0

"""Every row of every held-out set on disk against the metrics that grade it: each gold refusal is detected as a
refusal and no answerable reference is; each gold correction is graded correct; each reference passes its own row;
the taught set builds for every recipe and its key facts are in the training answers it asks for."""

from __future__ import annotations


import pytest

from conftest import ROOT

from vslm.eval.evaluate import TAUGHT_SAMPLE, read_eval_file, taught_rows
from vslm.recipes.matrix import load_recipes
from vslm.eval.metrics import is_refusal, normalize, score_row, signals_correction
from vslm.data.registry import load_registry, load_rows

REGISTRY = load_registry()
RECIPES = load_recipes()
EVAL_FILES = sorted({p.relative_to(ROOT).as_posix() for p in ROOT.glob("datasets/*/*_eval.jsonl")}
                    | {REGISTRY[r["eval_set"]]["file_name"] for r in RECIPES.values() if r["eval_set"] in REGISTRY}
                    | {e["file_name"] for n, e in REGISTRY.items() if n.endswith("_eval") and "file_name" in e})
TRAIN_SETS = sorted({n for r in RECIPES.values() for n in r["datasets"]} | {"general_train"})
ANSWERABLE = ("qa", "classification", "extraction", "correction")
# How the training data marks the answers that are themselves refusals (what the model is taught to decline).
REFUSAL_CATEGORIES = {"out_of_scope", "out-of-scope", "unknown", "refusal", "unanswerable"}


def rows_of(file_name: str) -> list[dict]:
    return read_eval_file(ROOT / file_name, keep_lines=True)


def where(file_name: str, row: dict) -> str:
    return f"{file_name}:{row['_line']} ({row['id']})"


def taught_refusal(row: dict) -> bool:
    fact = str(row.get("fact") or "")
    return row.get("category") in REFUSAL_CATEGORIES or fact == "id-scope" or "refus" in fact or "out_of_scope" in fact


@pytest.mark.parametrize("file_name", EVAL_FILES)
def test_every_gold_refusal_is_detected(file_name):
    missed = [where(file_name, r) + ": " + r["output"] for r in rows_of(file_name) if r.get("task") == "refusal" and not is_refusal(r["output"])]
    assert not missed, "gold refusals the detector misses:\n" + "\n".join(missed)


@pytest.mark.parametrize("file_name", EVAL_FILES)
def test_no_answerable_reference_is_taken_for_a_refusal(file_name):
    flagged = [where(file_name, r) + ": " + r["output"] for r in rows_of(file_name)
               if r.get("task", "qa") in ANSWERABLE and is_refusal(r["output"])]
    assert not flagged, "answerable references detected as refusals (or refusal rows not marked task refusal):\n" + "\n".join(flagged)


@pytest.mark.parametrize("file_name", EVAL_FILES)
def test_every_reference_passes_its_own_row(file_name):
    """The reference answer, given as the answer, is graded right: key facts are in it, a refusal refuses, a
    correction corrects, a label matches."""
    failed = [where(file_name, r) for r in rows_of(file_name) if score_row(r, r["output"], text_metrics=False)["correct"] is False]
    assert not failed, "references graded wrong on their own row:\n" + "\n".join(failed)


@pytest.mark.parametrize("file_name", EVAL_FILES)
def test_every_gold_correction_signals_the_correction(file_name):
    rows = [r for r in rows_of(file_name) if r.get("task") == "correction"]
    missed = [where(file_name, r) + ": " + r["output"] for r in rows if not signals_correction(r["output"])]
    assert not missed, "gold corrections without a correction cue:\n" + "\n".join(missed)
    for row in rows:
        # accepting the premise, echoing the question, or stating the facts without calling the premise wrong all fail
        wrong = [row["instruction"], "，".join(row["key_facts"]) + "。"] + ([row["false_premise"]] if row.get("false_premise") else [])
        for answer in wrong:
            assert score_row(row, answer, text_metrics=False)["correct"] is False, f"{where(file_name, row)}: {answer!r} graded right"


@pytest.mark.parametrize("name", TRAIN_SETS)
def test_training_answers_are_refusals_exactly_where_the_data_teaches_refusing(name):
    file_name = REGISTRY[name]["file_name"]
    rows = [r for r in load_rows(ROOT / file_name) if isinstance(r.get("output"), str) and r["output"]]
    assert rows, file_name
    wrong = [f"{file_name}:{r['_line']}: {'missed' if taught_refusal(r) else 'flagged'}: {r['output'][:100]}"
             for r in rows if is_refusal(r["output"]) != taught_refusal(r)]
    assert not wrong, "refusal detector disagrees with the training data:\n" + "\n".join(wrong)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_taught_set_builds_and_asks_for_answers_that_carry_the_facts(recipe):
    r = RECIPES[recipe]
    path = ROOT / REGISTRY[r["eval_set"]]["file_name"]
    rows = read_eval_file(path)
    taught = taught_rows(rows, r["datasets"], r["eval_set"])
    linked = [row for row in rows if row.get("taught_question")]
    assert len(taught) == min(len(linked), TAUGHT_SAMPLE)
    assert taught == taught_rows(rows, r["datasets"], r["eval_set"]), "the sample is fixed"
    assert len({t["id"] for t in taught}) == len(taught)
    for t in taught:
        assert t["measures"] == "taught" and t["id"].endswith("-taught")
        missing = [f for f in t["key_facts"] if normalize(f) not in normalize(t["output"])]
        assert not missing, f"{t['reworded_id']}: key facts {missing} are not in the training answer {t['source']} of its taught_question"

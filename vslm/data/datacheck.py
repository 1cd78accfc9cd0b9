"""Repository-wide data checks: registry integrity, recipe datasets registered, held-out sets disjoint from training,
held-out references written anew (not copied training answers), every key-fact row carrying a discriminative fact,
reworded rows linked to the training question that taught their facts, and classification labels that punctuation
alone does not tell apart."""

from __future__ import annotations

import unicodedata
from typing import Any

from ..core.jsonio import read_jsonl
from ..core.text import jaccard, trigrams
from ..recipes.matrix import load_recipes
from ..eval.metrics import measure_of
from ..core.paths import ROOT
from .registry import check_registry, load_registry, unchecked_reason

NEAR_DUPLICATE = 0.6  # character-trigram Jaccard at or above this counts as a copy
COPIED_ANSWER = 0.8  # a reference this close (trigram Jaccard) to a training answer rewards reproducing training
GENERIC_SHARE = 0.2  # a key fact in at least this share of the training answers is hit by a canned answer
LABEL_TASKS = ("classification", "extraction")  # references are labels / spans of the input, copies by design
REWRITE = "rewrite it in other words with the same facts"
QUESTION_MARKS = ("？", "?")
PUNCTUATION_CUE = 0.5  # a question mark in this much larger a share of one label's training prompts than another's


def normalize_prompt(text: str) -> str:
    return "".join(ch for ch in text.lower() if not ch.isspace() and not unicodedata.category(ch).startswith(("P", "S")))


def prompt(row: dict[str, Any]) -> str:
    return str(row.get("instruction", "")) + str(row.get("input", "") or "")


def closest_copy(text: str, seen: set[str], seen_grams: list[set[str]]) -> float:
    """1.0 when the normalised text is one of `seen`, else its best character-trigram Jaccard against them."""
    norm = normalize_prompt(text)
    if norm in seen:
        return 1.0
    grams = trigrams(norm)
    return max((jaccard(grams, g) for g in seen_grams), default=0.0)


def copy_problems(rows: list[dict[str, Any]], text_of, seen_texts: list[str], threshold: float, label: str,
                  what: str, of: str, fix: str = "") -> list[str]:
    """`<label>:<line>: <what> copies a training <of>` (or is a near-copy) for every row too close to a seen text."""
    seen = {normalize_prompt(t) for t in seen_texts}
    seen_grams = [trigrams(t) for t in seen]
    problems = []
    for row in rows:
        best = closest_copy(text_of(row), seen, seen_grams)
        where = f"{label}:{row.get('_line')}: {what}"
        if best == 1.0:
            problems.append(f"{where} copies a training {of}{fix}")
        elif best >= threshold:
            problems.append(f"{where} is a near-copy of a training {of} (trigram Jaccard {best:.2f}){fix}")
    return problems


def overlap_problems(train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], label: str) -> list[str]:
    return copy_problems(eval_rows, prompt, [prompt(r) for r in train_rows], NEAR_DUPLICATE, label, "held-out prompt", "prompt")


def free_text_answers(train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]]) -> list[str]:
    """The training answers that are written text: not a label of the held-out set, not a span of the row's own prompt."""
    labels = {label for row in eval_rows for label in row.get("labels") or []}
    out = []
    for row in train_rows:
        answer = str(row.get("output", "") or "")
        if answer and answer not in labels and normalize_prompt(answer) not in normalize_prompt(prompt(row)):
            out.append(answer)
    return out


def copied_reference_problems(train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], label: str) -> list[str]:
    """A held-out reference must not be a training answer: ROUGE/BLEU and reference loss would reward reproducing it."""
    written = [r for r in eval_rows if r.get("task", "qa") not in LABEL_TASKS]
    return copy_problems(written, lambda r: str(r.get("output", "")), free_text_answers(train_rows, eval_rows),
                         COPIED_ANSWER, label, "reference answer", "answer", f"; {REWRITE}")


def generic_fact_problems(train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], label: str) -> list[str]:
    """Every row with key facts needs one that a canned answer does not hit: a fact in >= GENERIC_SHARE of the
    training answers, or in the row's own question, cannot be the only kind of fact a row checks."""
    answers = [normalize_prompt(a) for a in free_text_answers(train_rows, eval_rows)]
    if not answers:
        return []
    problems = []
    for row in eval_rows:
        facts = row.get("key_facts") or []
        if not facts:
            continue
        question = normalize_prompt(prompt(row))
        reasons = []
        for fact in facts:
            norm = normalize_prompt(str(fact))
            share = sum(norm in a for a in answers) / len(answers)
            if share >= GENERIC_SHARE:
                reasons.append(f"`{fact}` is in {share:.0%} of the training answers")
            elif norm in question:  # matched as key-fact recall matches, so echoing the question would pass
                literally = str(fact) in prompt(row)
                reasons.append(f"`{fact}` is in the question" + ("" if literally else " once case, spaces and punctuation are ignored"))
            else:
                break
        else:
            problems.append(f"{label}:{row.get('_line')}: only generic key facts ({'; '.join(reasons)}); "
                            "add a fact of the reference that only a correct answer contains")
    return problems


def taught_link_problems(train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], label: str, train_label: str) -> list[str]:
    """A reworded row names the training question that taught its facts (`taught_question`: the training
    instruction, plus a newline and its input when not empty); it must exist and its answer must carry every key fact."""
    taught: dict[str, list[str]] = {}
    for row in train_rows:
        question = str(row.get("instruction", "")) + ("\n" + str(row["input"]) if row.get("input") else "")
        taught.setdefault(question.strip(), []).append(normalize_prompt(str(row.get("output", ""))))
    problems = []
    for row in eval_rows:
        if measure_of(row) != "reworded" or row.get("task", "qa") != "qa":
            continue
        where = f"{label}:{row.get('_line')}"
        question = row.get("taught_question")
        if not isinstance(question, str) or not question.strip():
            problems.append(f"{where}: a reworded row needs `taught_question`, the exact training prompt whose answer teaches "
                            "its facts")
            continue
        if question.strip() not in taught:
            problems.append(f"{where}: `taught_question` {question!r} is not a training prompt of {train_label}; copy it exactly "
                            "(instruction, plus a newline and the input when there is one)")
            continue
        answers = taught[question.strip()]
        missing = [f for f in row.get("key_facts") or [] if not any(normalize_prompt(str(f)) in a for a in answers)]
        if missing:
            problems.append(f"{where}: key fact(s) {', '.join(f'`{f}`' for f in missing)} are not in the answer to its "
                            "`taught_question`; a reworded row checks only facts training taught")
    return problems


def punctuation_cue_problems(train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], train_label: str) -> list[str]:
    """A classifier learns the cheapest feature that separates its labels. When a question mark is in most training
    prompts of one label and few of another's, that feature is punctuation, and a question typed without one is misfiled."""
    problems = []
    for labels in sorted({tuple(r["labels"]) for r in eval_rows if r.get("task") == "classification" and r.get("labels")}):
        share = {}
        for label in labels:
            rows = [r for r in train_rows if r.get("output") == label]
            if rows:
                share[label] = sum(any(mark in prompt(r) for mark in QUESTION_MARKS) for r in rows) / len(rows)
        if len(share) < 2:
            continue
        most, fewest = max(share, key=share.get), min(share, key=share.get)
        if share[most] - share[fewest] >= PUNCTUATION_CUE:
            problems.append(f"{train_label}: a question mark is in {share[most]:.0%} of the `{most}` prompts and "
                            f"{share[fewest]:.0%} of the `{fewest}` prompts, so a classifier can learn the punctuation "
                            f"instead of the meaning; write `{most}` rows without one (users often leave it out)")
    return problems


def eval_pairs() -> list[tuple[str, str]]:
    """(train dataset, eval dataset) pairs: each recipe's datasets against its eval set."""
    pairs = []
    for recipe in load_recipes().values():
        for name in recipe["datasets"]:
            pairs.append((name, recipe["eval_set"]))
    pairs.append(("general_train", "general_eval"))
    return sorted(set(pairs))


def trained_on() -> dict[str, list[str]]:
    """Each held-out set and the training datasets evaluated on it."""
    out: dict[str, list[str]] = {}
    for train_name, eval_name in eval_pairs():
        out.setdefault(eval_name, []).append(train_name)
    return out


def check_repository() -> list[str]:
    problems = check_registry()
    registry = load_registry()
    for recipe in load_recipes().values():
        names = list(recipe["datasets"]) + [recipe["eval_set"]] + list((recipe["pt"] or {}).get("datasets", []))
        for name in names:
            if name not in registry:
                problems.append(f"templates/matrix.yaml: recipe `{recipe.name}` uses dataset `{name}`, which dataset_info.json does not register")
    if problems:
        return problems
    remote = sorted({n for pair in eval_pairs() for n in pair if not isinstance(registry[n].get("file_name"), str)
                     or unchecked_reason(registry[n]) or "script_url" in registry[n]})
    if remote:
        return [f"dataset_info.json: recipe dataset `{n}` is not a local file; the held-out checks (overlap, copied "
                "references, key facts) need its rows — register a local file_name" for n in remote]
    for eval_name, train_names in sorted(trained_on().items()):
        label = registry[eval_name]["file_name"]
        eval_rows = read_jsonl(ROOT / label)
        all_train: list[dict[str, Any]] = []
        for train_name in train_names:
            train_rows = read_jsonl(ROOT / registry[train_name]["file_name"])
            all_train += train_rows
            problems += overlap_problems(train_rows, eval_rows, label)
            problems += copied_reference_problems(train_rows, eval_rows, label)
            problems += generic_fact_problems(train_rows, eval_rows, label)
            problems += punctuation_cue_problems(train_rows, eval_rows, registry[train_name]["file_name"])
        problems += taught_link_problems(all_train, eval_rows, label, " + ".join(registry[n]["file_name"] for n in train_names))
    return list(dict.fromkeys(problems))  # a problem found against two training sets is listed once

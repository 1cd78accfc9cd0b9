"""Fact-novelty probe (Gekhman et al. 2024): which taught facts the base model already knows, before training.

Each held-out row that tests a taught fact (task qa, measures reworded, with key facts) is one fact. Its question
is the training question the row links to (`taught_question`); without a link, the training question whose answer
carries all the row's key facts (the most similar one to the held-out question); without such a row, the held-out
question itself. The served base model answers greedily; a fact is Known when the answer contains every key fact,
else Unknown. Recall on Unknown facts is the real measure of injection: the report shows it when rows carry
`known: false` (`--write-labels`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from .client import ask_all
from ..core.text import jaccard, trigrams
from ..data.datacheck import normalize_prompt
from .evaluate import eval_set_path, question_index, read_eval_file, training_rows
from ..core.errors import DataError
from ..core.jsonio import atomic_write_json, atomic_write_text, read_text, sha256_file, text_lines
from ..core.errors import RecipeError
from ..recipes.matrix import Recipe
from ..recipes.resolve import resolve
from .metrics import key_fact_recall, measure_of, normalize
from ..core.paths import rel


def probe_questions(rows: list[dict[str, Any]], train_names: list[str]) -> list[dict[str, Any]]:
    """One probe per taught fact: {"id", "instruction", "input", "history", "key_facts", "question_source", "training_source"}."""
    facts = [r for r in rows if r.get("task", "qa") == "qa" and measure_of(r) == "reworded" and r.get("key_facts")]
    training = training_rows(train_names)
    by_question = question_index(training)
    norm_answers = [normalize(t["output"]) for t in training]
    out = []
    for row in facts:
        item, source = None, "held-out question"
        if row.get("taught_question"):
            item = by_question.get(row["taught_question"].strip())
            if item is None:
                raise DataError(f"row `{row['id']}`: taught_question {row['taught_question']!r} is not a question of "
                                f"{', '.join(train_names)} — copy the training instruction (+ newline + input) exactly")
            source = "taught_question"
        else:
            facts_norm = [normalize(f) for f in row["key_facts"]]
            carriers = [t for t, ans in zip(training, norm_answers) if all(f in ans for f in facts_norm)]
            if carriers:
                grams = trigrams(normalize_prompt(row["instruction"]))
                item = max(carriers, key=lambda t: jaccard(grams, trigrams(normalize_prompt(t["instruction"]))))
                source = "training answer carries the key facts"
        question = item or row
        out.append({"id": row["id"], "instruction": question["instruction"], "input": question.get("input") or "",
                    "history": question.get("history") or [], "key_facts": list(row["key_facts"]), "question_source": source,
                    "training_source": item["source"] if item else None})
    return out


def check_labels_writable(path: Path, replace: bool) -> None:
    """Refuse before asking anything: rows that already carry `known` are replaced only with --replace."""
    if replace:
        return
    for row in read_eval_file(path, keep_lines=True):
        if "known" in row:
            raise DataError(f"{rel(path)}:{row['_line']}: row `{row['id']}` already has `known` (an earlier probe's label); "
                            "pass --replace to overwrite the labels")


def write_labels(path: Path, labels: dict[str, bool], expected_sha256: str) -> int:
    """Set `known` on the labelled rows, rewriting only their lines, atomically. Returns the rows changed."""
    if sha256_file(path) != expected_sha256:
        raise DataError(f"{rel(path)} changed while the probe ran; nothing was written there (the labels are in probe.json) "
                        "— run `vslm probe` again, its answers are cached")
    rows = read_eval_file(path, keep_lines=True)
    lines = list(text_lines(read_text(path)))
    changed = 0
    for row in rows:
        if row["id"] in labels:
            line = row["_line"] - 1
            new = json.dumps({**{k: v for k, v in row.items() if not k.startswith("_")}, "known": labels[row["id"]]}, ensure_ascii=False) + "\n"
            changed += new != lines[line]
            lines[line] = new
    if not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    atomic_write_text(path, "".join(lines))
    return changed


def probe(recipe: Recipe, *, base_url: str, model: str = "base", eval_file: Path | None = None, out_dir: Path | None = None,
          limit: int | None = None, max_tokens: int | None = None, concurrency: int = 8, strict_model: bool = True,
          labels: bool = False, replace: bool = False) -> dict[str, Any]:
    """Ask the served base model every taught fact's question; write probe.json (and the labels, with `labels`)."""
    path = Path(eval_file) if eval_file else eval_set_path(recipe["eval_set"])
    rows = read_eval_file(path, limit)
    questions = probe_questions(rows, recipe["datasets"])
    if not questions:
        raise RecipeError(f"{rel(path)} has no taught facts to probe: it needs qa rows with `key_facts` "
                          "(measures reworded) — see datasets/FORMAT.md")
    if labels:
        check_labels_writable(path, replace)
    before = sha256_file(path)
    out_dir = Path(out_dir) if out_dir else resolve(recipe).probe_dir
    max_tokens = max_tokens or recipe["max_new_tokens"]
    extra = {"chat_template_kwargs": {"enable_thinking": False}} if recipe["enable_thinking"] is False else None
    answers = ask_all(base_url, model, questions, system=recipe["system"], cache_path=out_dir / "cache.jsonl", max_tokens=max_tokens,
                      concurrency=concurrency, extra_body=extra, strict_model=strict_model, label=f"probe {model}")
    facts = []
    for q in questions:
        recall = key_fact_recall(answers[q["id"]], q["key_facts"])
        facts.append({**{k: v for k, v in q.items() if k != "history"}, "answer": answers[q["id"]], "key_fact_recall": recall,
                      "known": recall == 1.0})
    known = sum(f["known"] for f in facts)
    result = {"recipe": recipe.name, "eval_file": rel(path), "endpoint": base_url, "model": model, "system": recipe["system"],
              "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens},
              "probed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "counts": {"facts": len(facts), "known": known, "unknown": len(facts) - known}, "facts": facts}
    atomic_write_json(out_dir / "probe.json", result)
    result["probe_file"] = out_dir / "probe.json"
    if labels:
        result["labels_changed"] = write_labels(path, {f["id"]: f["known"] for f in facts}, before)
    return result

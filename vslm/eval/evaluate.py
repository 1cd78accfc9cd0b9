"""Evaluate served models on a registered held-out set: answers -> per-row scores -> summary.

Also builds what a skeptic compares against, with no model at all: the taught set (the training questions behind
the held-out rows, an injection check) and the floors (echo the question; the best single canned training answer;
the answer of the most similar training question)."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from .client import AnswerCache, ask_all, prompt_of
from ..core.errors import DataError
from ..core.jsonio import read_jsonl, strip_meta
from .judge import JudgeSpec, judge_answers
from .metrics import MEASURES, aggregate, measure_of, row_headline, score_row
from ..core.paths import ROOT, rel
from ..data.registry import load_registry, load_rows

TASKS = ("qa", "classification", "extraction", "refusal", "correction")
FILE_MEASURES = tuple(m for m in MEASURES if m != "taught")  # "taught" rows are built at eval time, never stored
TAUGHT_SAMPLE = 60  # at most this many taught questions (a fixed, seeded sample): the demo asks them twice
TAUGHT_SEED = 14


def eval_set_path(name: str) -> Path:
    registry = load_registry()
    if name not in registry:
        raise DataError(f"evaluation set `{name}` is not registered in dataset_info.json")
    return ROOT / registry[name]["file_name"]


def read_eval_file(path: Path, limit: int | None = None, default_measure: str | None = None,
                   keep_lines: bool = False) -> list[dict[str, Any]]:
    """Rows of a held-out JSONL file, checked; each problem is one line naming file:line and the key."""
    rows = read_jsonl(path)
    for row in rows:
        where = f"{rel(path)}:{row['_line']}"
        task = row.get("task", "qa")
        if task not in TASKS:
            raise DataError(f"{where}: task {task!r} is not one of {', '.join(TASKS)}")
        for key in ("id", "instruction", "output"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise DataError(f"{where}: `{key}` missing or empty")
        if task == "classification" and row["output"] not in (row.get("labels") or []):
            raise DataError(f"{where}: output {row['output']!r} is not in `labels`")
        if task == "correction" and not (isinstance(row.get("key_facts"), list) and row["key_facts"]):
            raise DataError(f"{where}: a correction row needs `key_facts` (the correct facts the answer must state)")
        if "measures" in row and row["measures"] not in FILE_MEASURES:
            raise DataError(f"{where}: measures {row['measures']!r} is not one of {', '.join(FILE_MEASURES)} "
                            "(the taught set is built at eval time from `taught_question`)")
        if "taught_question" in row and not (isinstance(row["taught_question"], str) and row["taught_question"].strip()):
            raise DataError(f"{where}: `taught_question` must be the exact training instruction (a non-empty string)")
        if "known" in row and not isinstance(row["known"], bool):
            raise DataError(f"{where}: `known` must be true or false (written by `vslm probe --write-labels`)")
        if default_measure:
            row.setdefault("measures", default_measure)
    rows = rows if keep_lines else [strip_meta(r) for r in rows]
    return rows[:limit] if limit else rows


def load_eval_rows(name: str, limit: int | None = None, default_measure: str | None = None) -> list[dict[str, Any]]:
    return read_eval_file(eval_set_path(name), limit, default_measure)


def training_rows(names: list[str], max_samples: int | None = None) -> list[dict[str, Any]]:
    """Rows {instruction, input, output, history, source} of registered training datasets, in file order; with
    `max_samples`, from the first rows of each dataset only (what LlamaFactory's `max_samples` trains)."""
    registry = load_registry()
    out = []
    for name in names:
        if name not in registry:
            raise DataError(f"training dataset `{name}` is not registered in dataset_info.json")
        entry = registry[name]
        path = ROOT / entry["file_name"]
        cols = entry.get("columns") or {}
        for row in load_rows(path)[:max_samples]:
            source = f"{entry['file_name']}:{row.get('_line', '?')}"
            if entry.get("formatting", "alpaca") == "alpaca":
                item = {"instruction": row.get(cols.get("prompt", "instruction")) or "", "input": row.get(cols.get("query", "input")) or "",
                        "output": row.get(cols.get("response", "output")) or "", "history": row.get(cols.get("history", "history")) or []}
            else:  # sharegpt / openai: the last user turn and its answer, earlier turns as history
                tags = entry.get("tags", {})
                role, content = tags.get("role_tag", "from"), tags.get("content_tag", "value")
                system = tags.get("system_tag", "system")
                turns = [m.get(content, "") for m in row.get(cols.get("messages", "conversations")) or [] if m.get(role) != system]
                if len(turns) < 2:
                    continue
                pairs = [turns[i:i + 2] for i in range(0, len(turns) - 1, 2)]
                item = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1], "history": pairs[:-1]}
            if isinstance(item["instruction"], str) and isinstance(item["output"], str) and item["output"]:
                out.append({**item, "source": source})
    return out


def question_index(training: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Training rows by question: the instruction, and the instruction + newline + input (the prompt the model sees);
    the first row of a repeated question wins."""
    index: dict[str, dict[str, Any]] = {}
    for item in training:
        index.setdefault(prompt_of(item).strip(), item)
    for item in training:
        index.setdefault(item["instruction"].strip(), item)
    return index


def taught_rows(rows: list[dict[str, Any]], train_names: list[str], eval_name: str = "evaluation set",
                sample: int = TAUGHT_SAMPLE) -> list[dict[str, Any]]:
    """The taught set: for each row with `taught_question`, that training question verbatim with the row's key facts
    and the training answer as reference (id `<id>-taught`, measures "taught"). All of them, or a fixed seeded
    sample of `sample` rows. An injection check: the model saw these questions, so it never shows generalisation."""
    linked = [r for r in rows if r.get("taught_question")]
    if not linked:
        return []
    index = question_index(training_rows(train_names))
    for row in linked:
        if row["taught_question"].strip() not in index:
            raise DataError(f"{eval_name}: row `{row['id']}`: taught_question {row['taught_question']!r} is not a question of "
                            f"{', '.join(train_names)} — copy the training instruction (+ newline + input) exactly")
    if len(linked) > sample:
        keep = sorted(random.Random(TAUGHT_SEED).sample(range(len(linked)), sample))
        linked = [linked[i] for i in keep]
    out = []
    for row in linked:
        item = index[row["taught_question"].strip()]
        taught = {"id": f"{row['id']}-taught", "category": row.get("category", "all"), "task": "qa", "measures": "taught",
                  "instruction": item["instruction"], "input": item["input"], "output": item["output"],
                  "key_facts": list(row.get("key_facts") or []), "source": item["source"], "reworded_id": row["id"]}
        if item["history"]:
            taught["history"] = item["history"]
        if "known" in row:
            taught["known"] = row["known"]
        out.append(taught)
    return out


def about_trained_facts(rows: list[dict[str, Any]], train_names: list[str], max_samples: int | None) -> list[dict[str, Any]]:
    """The held-out rows a run with LlamaFactory's `max_samples` can fairly be asked: those whose `taught_question` is
    among the rows it trained, and every row without one (out-of-scope, general). All rows when max_samples is None."""
    if max_samples is None:
        return rows
    trained = question_index(training_rows(train_names, max_samples))
    return [r for r in rows if not r.get("taught_question") or r["taught_question"].strip() in trained]


def fixed_evaluation(name: str, rows: list[dict[str, Any]], answers: dict[str, str], **extra: Any) -> dict[str, Any]:
    """An evaluation of answers that need no model (the floors), in the shape `evaluate` returns."""
    scores = [score_row(row, answers[row["id"]]) for row in rows]
    return {"model": name, "endpoint": None, "sampling": None, **extra, "answers": answers,
            "scores": {r["id"]: s for r, s in zip(rows, scores)}, "summary": aggregate(rows, scores)}


def best_constant_answer(rows: list[dict[str, Any]], candidates: list[str]) -> tuple[str, float, int]:
    """The single answer that, given to every row, scores best: mean per-row headline (key-fact recall on QA rows,
    right/wrong elsewhere). Ties: more frequent in training, then shorter, then alphabetical. (answer, score, count)."""
    counts = Counter(c for c in candidates if c.strip())
    if not counts or not rows:
        raise DataError("no training answers to choose a constant-answer floor from")

    def value(answer: str) -> float:
        heads = [row_headline(row, score_row(row, answer, text_metrics=False)) for row in rows]
        heads = [h for h in heads if h is not None]
        return sum(heads) / len(heads) if heads else 0.0

    best = max(counts, key=lambda a: (value(a), counts[a], -len(a), [-ord(ch) for ch in a[:64]]))
    return best, round(value(best), 4), counts[best]


def nearest_training_answers(rows: list[dict[str, Any]], training: list[dict[str, Any]]) -> dict[str, str]:
    """{row id: the answer of the training row whose prompt is most like the row's}, by BM25 over character n-grams (the
    index vslm.eval.rag retrieves with). A classification row is matched only among the training rows with its
    instruction (the task it names), so the answer is one of that task's labels; other rows among all training rows."""
    from .rag import Index, Passage

    instructions = {item["instruction"] for item in training}
    indexes: dict[str | None, tuple[list[dict[str, Any]], Any]] = {}
    answers = {}
    for row in rows:
        pool = row["instruction"] if row.get("task") == "classification" and row["instruction"] in instructions else None
        if pool not in indexes:
            items = [item for item in training if pool is None or item["instruction"] == pool]
            indexes[pool] = items, Index.build([Passage(i, "", item["output"], key=prompt_of(item)) for i, item in enumerate(items)])
        items, index = indexes[pool]
        answers[row["id"]] = items[index.search(prompt_of(row), k=1)[0].id]["output"]
    return answers


def floor_results(rows: list[dict[str, Any]], training: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """The floors on these rows: `echo` (the answer is the question) and, given the training rows the model learnt
    from ({instruction, input, output}, as `training_rows` reads them), `constant`: for each section (what the rows
    measure), the one training answer that scores best on that section's rows, given to every row of it (`chosen`
    says which, per section); and `lookup`: each row gets the answer of the most similar training question
    (nearest_training_answers) — what a search of the training rows answers with no model. Taught rows get no lookup:
    they are training questions, which a lookup answers verbatim."""
    out = {"echo": fixed_evaluation("echo the question", rows, {r["id"]: prompt_of(r) for r in rows})}
    if training:
        training_answers = [item["output"] for item in training]
        chosen, answers = {}, {}
        for measure in dict.fromkeys(measure_of(r) for r in rows):
            group = [r for r in rows if measure_of(r) == measure]
            answer, score, count = best_constant_answer(group, training_answers)
            chosen[measure] = {"answer": answer, "mean_headline": score, "training_copies": count, "rows": len(group)}
            answers.update({r["id"]: answer for r in group})
        out["constant"] = fixed_evaluation("constant answer", rows, answers, chosen=chosen)
        asked = [r for r in rows if measure_of(r) != "taught"]
        if asked:
            out["lookup"] = fixed_evaluation("nearest training answer", asked, nearest_training_answers(asked, training),
                                             training_rows=len(training))
    return out


def evaluate(rows: list[dict[str, Any]], *, base_url: str, model: str, system: str | None, cache_path: Path,
             max_tokens: int, concurrency: int = 8, structured: bool = False, enable_thinking: bool | None = None,
             strict_model: bool = True, label: str = "", judge: JudgeSpec | None = None,
             passages: dict[str, list[str]] | None = None, template: str | None = None,
             regenerate_below: float | None = None, verify_threshold: float | None = None,
             count_tokens: Callable[[str], int] | None = None) -> dict[str, Any]:
    """Ask, score and summarise. With `passages` ({row id: retrieved texts}) every answer is also verified against
    them (vslm.eval.verify: consistency score, flagged below `verify_threshold`); with `template` too, the passages go
    into the prompt (retrieval-augmented answers, vslm.eval.rag); `regenerate_below` asks a flagged answer again with the
    passages in the prompt (rag.REGENERATE_TEMPLATE: only what they say, else say so) and keeps the second answer
    (the first stays under `first_answers`). Rows are scored as written, whatever the prompt was."""
    from .rag import REGENERATE_TEMPLATE, with_passages
    from .verify import THRESHOLD, verification_summary, verify

    extra: dict[str, Any] = {}
    if enable_thinking is False:
        extra["chat_template_kwargs"] = {"enable_thinking": False}
    if (template or regenerate_below is not None) and passages is None:
        raise DataError("retrieval-augmented prompts or regeneration need the retrieved passages (vslm.eval.rag)")
    threshold = THRESHOLD if verify_threshold is None else verify_threshold

    def ask(todo: list[dict[str, Any]], cache: Path, prompt: str | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
        asked = with_passages(todo, passages, prompt) if prompt else todo
        per_row = [{"structured_outputs": {"choice": row["labels"]}} if structured and row.get("task") == "classification" else None
                   for row in todo]
        return ask_all(base_url, model, asked, system=system, cache_path=cache, max_tokens=max_tokens, concurrency=concurrency,
                       extra_body=extra, per_row_extra=per_row, strict_model=strict_model, label=label), asked

    before = len(AnswerCache(cache_path).done)
    started = time.perf_counter()
    answers, asked = ask(rows, cache_path, template)
    seconds = time.perf_counter() - started
    new = len(AnswerCache(cache_path).done) - before
    checks = verify(rows, answers, passages, threshold) if passages is not None else {}
    first: dict[str, str] = {}
    if regenerate_below is not None:
        low = [r for r in rows if checks[r["id"]]["consistency"] < regenerate_below]
        if low:
            again, _ = ask(low, cache_path.with_name(cache_path.stem + ".regenerated.jsonl"), REGENERATE_TEMPLATE)
            first = {r["id"]: answers[r["id"]] for r in low}
            answers = {**answers, **again}
            checks.update(verify(low, answers, passages, threshold))
            for row_id in first:
                checks[row_id]["regenerated"] = True
    scores = [score_row(row, answers[row["id"]]) for row in rows]
    for row, score in zip(rows, scores):
        score.update(checks.get(row["id"], {}))
    if judge:
        verdicts = judge_answers(rows, answers, judge, cache_path.with_name(cache_path.stem + ".judge.jsonl"), label or model)
        for row, score in zip(rows, scores):
            score.update(verdicts.get(row["id"], {}))
    if structured:
        off = [r["id"] for r, s in zip(rows, scores) if r.get("task") == "classification" and s["predicted"] is None]
        if off:
            raise DataError(f"structured choice was on, yet {len(off)} answers are not labels (first: {off[0]})")
    prompts = [prompt_of(r) for r in asked]
    by_id = {r["id"]: s for r, s in zip(rows, scores)}
    out = {
        "model": model,
        "endpoint": base_url,
        "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens, **({"structured_choice": True} if structured else {})},
        **({"judge": judge.record()} if judge else {}),
        "evaluated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "answers": {r["id"]: answers[r["id"]] for r in rows},
        "scores": by_id,
        "summary": aggregate(rows, scores),
        # wall-clock of the answers asked in this run (cached answers cost nothing); prompt size per question
        "timing": {"seconds": round(seconds, 2), "asked": new, "seconds_per_answer": round(seconds / new, 3) if new else None},
        "prompt": {"chars": round(sum(map(len, prompts)) / max(1, len(prompts)), 1),
                   "tokens": round(sum(map(count_tokens, prompts)) / max(1, len(prompts)), 1) if count_tokens else None},
    }
    if template:
        out["rag"] = {"template": template}
    if passages is not None:
        out["verification"] = {**verification_summary(rows, by_id, threshold), "regenerated": len(first),
                               **({"regenerate_below": regenerate_below} if regenerate_below is not None else {})}
    if first:
        out["first_answers"] = first
    return out

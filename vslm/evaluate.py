"""Evaluate served models on a registered held-out set: answers -> per-row scores -> summary."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .client import ask_all
from .jsonio import DataError, read_jsonl, strip_meta
from .judge import JudgeSpec, judge_answers
from .metrics import aggregate, score_row
from .paths import ROOT
from .registry import load_registry

TASKS = ("qa", "classification", "extraction", "refusal")


def load_eval_rows(name: str, limit: int | None = None) -> list[dict[str, Any]]:
    registry = load_registry()
    if name not in registry:
        raise DataError(f"evaluation set `{name}` is not registered in dataset_info.json")
    path = ROOT / registry[name]["file_name"]
    rows = read_jsonl(path)
    for row in rows:
        where = f"{path.relative_to(ROOT)}:{row['_line']}"
        task = row.get("task", "qa")
        if task not in TASKS:
            raise DataError(f"{where}: task {task!r} is not one of {', '.join(TASKS)}")
        for key in ("id", "instruction", "output"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise DataError(f"{where}: `{key}` missing or empty")
        if task == "classification" and row["output"] not in (row.get("labels") or []):
            raise DataError(f"{where}: output {row['output']!r} is not in `labels`")
    rows = [strip_meta(r) for r in rows]
    return rows[:limit] if limit else rows


def evaluate(rows: list[dict[str, Any]], *, base_url: str, model: str, system: str | None, cache_path: Path,
             max_tokens: int, concurrency: int = 8, structured: bool = False, enable_thinking: bool | None = None,
             strict_model: bool = True, label: str = "", judge: JudgeSpec | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if enable_thinking is False:
        extra["chat_template_kwargs"] = {"enable_thinking": False}
    per_row = [
        {"structured_outputs": {"choice": row["labels"]}} if structured and row.get("task") == "classification" else None
        for row in rows
    ]
    answers = ask_all(base_url, model, rows, system=system, cache_path=cache_path, max_tokens=max_tokens,
                      concurrency=concurrency, extra_body=extra, per_row_extra=per_row, strict_model=strict_model, label=label)
    scores = [score_row(row, answers[row["id"]]) for row in rows]
    if judge:
        verdicts = judge_answers(rows, answers, judge, cache_path.with_name(cache_path.stem + ".judge.jsonl"), label or model)
        for row, score in zip(rows, scores):
            score.update(verdicts.get(row["id"], {}))
    if structured:
        off = [r["id"] for r, s in zip(rows, scores) if r.get("task") == "classification" and s["predicted"] is None]
        if off:
            raise DataError(f"structured choice was on, yet {len(off)} answers are not labels (first: {off[0]})")
    return {
        "model": model,
        "endpoint": base_url,
        "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens, **({"structured_choice": True} if structured else {})},
        **({"judge": judge.record()} if judge else {}),
        "evaluated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "answers": {r["id"]: answers[r["id"]] for r in rows},
        "scores": {r["id"]: s for r, s in zip(rows, scores)},
        "summary": aggregate(rows, scores),
    }

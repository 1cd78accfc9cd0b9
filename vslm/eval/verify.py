"""Answer verification against retrieved passages: are the answer's numbers and named facts in them?

A claim is a number or quantity (distillation's grounding rule: 500元 must appear as 500元, 30天 as 30天 or 三十天)
or a named fact: a quoted or bracketed name or a Latin code (distill.TERM). The consistency score is the share of
the answer's claims the passages or the question support; an answer with no claim is scored by the share of its
character bigrams found there (half or more = 1). A refusal asserts nothing and scores 1. Below the threshold
(default 0.8, as the seed guide plans) an answer is flagged, and `vslm eval --regenerate-below 0.8` asks again with
the passages in the prompt. No LLM judge takes part."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from ..core.text import bigrams
from .metrics import is_refusal, measure_of, normalize

THRESHOLD = 0.8
# An answer with no number or name is judged by its wording: the share of its character bigrams in the passages,
# divided by this. Measured on the reference answers of finance_eval: faithful paraphrases of a retrieved article
# share 0.49-0.78 of their bigrams with it, so half counts as fully grounded.
WORDING_FULL = 0.5
# Spelled-out counts with these classifiers are wording, not facts (一个, 两类, 三个方面); 第十三条, 三十天, 两千元 are facts.
CLASSIFIERS = {"个", "台", "部", "张", "份", "家", "间", "套", "件", "项", "类", "种", "位", "名", "款", "笔", "户", "级", "档"}


def names(text: str) -> list[str]:
    """Named facts: quoted or bracketed names (《出差审批单》, “积分清零”) and Latin codes — two capitals or a digit
    (FTTR, KTMY, IPv6, 5G; not plain words such as The or App). Chinese names are not guessed: jieba's
    part-of-speech tags called common words names (东西, 师傅) and flagged correct answers."""
    from ..data.distill import TERM

    found = [t.strip() for t in TERM.findall(text)
             if not t.isascii() or sum(c.isupper() for c in t) >= 2 or any(c.isdigit() for c in t)]
    return list(dict.fromkeys(n for n in found if normalize(n)))


def numbers(text: str) -> list[tuple[Decimal, str | None, str]]:
    """(value, unit, as written) of each number and quantity, Chinese numerals with a unit too (第十三条, 三十天);
    list markers such as "1." aside."""
    from ..data.distill import LIST_MARKER, quantities

    found = quantities(LIST_MARKER.sub(" ", text))
    spelled = quantities(LIST_MARKER.sub(" ", text), spelled=True)[len(found):]
    return found + [q for q in spelled if q[1] not in CLASSIFIERS and q[0] != 1]


def unsupported_numbers(answer: str, material: str) -> tuple[int, list[str]]:
    """(how many numbers the answer states, those the material does not hold) — distillation's grounding rule
    (distill.unsupported_quantities) with Chinese numerals read on both sides. A number the material gives without
    a unit may carry any unit in the answer."""
    from ..data.distill import _normalise

    known = numbers(material)
    bare = {v for v, u, _ in known if u is None}
    values = {v for v, _, _ in known} | {Decimal(m) for m in re.findall(r"\d+(?:\.\d+)?", _normalise(material))}
    pairs = {(v, u) for v, u, _ in known}
    stated, missing = {}, []
    for value, unit, written in numbers(answer):
        stated.setdefault((value, unit), written)
    for (value, unit), written in stated.items():
        if value not in values or (unit and (value, unit) not in pairs and value not in bare):
            missing.append(written)
    return len(stated), missing


def _bigrams(text: str) -> set[str]:
    return set(bigrams(normalize(text)))


def check_answer(answer: str, passages: list[str], question: str = "") -> dict[str, Any]:
    """{"consistency": 0-1, "claims": n, "unsupported": [claims not in the passages or question], "basis"}."""
    if is_refusal(answer):
        return {"consistency": 1.0, "claims": 0, "unsupported": [], "basis": "refusal"}
    material = question + "\n" + "\n".join(passages)
    stated, missing = unsupported_numbers(answer, material)
    named = names(answer)
    if stated or named:
        norm_material = normalize(material)
        unsupported = missing + [n for n in named if normalize(n) not in norm_material]
        claims = stated + len(named)
        return {"consistency": round(1 - len(unsupported) / claims, 4), "claims": claims, "unsupported": unsupported,
                "basis": "claims"}
    grams = _bigrams(answer)
    if not grams:  # empty or punctuation only: nothing is supported
        return {"consistency": 0.0, "claims": 0, "unsupported": [], "basis": "empty"}
    coverage = len(grams & _bigrams(material)) / len(grams)
    return {"consistency": round(min(1.0, coverage / WORDING_FULL), 4), "claims": 0, "unsupported": [], "basis": "wording"}


def verify(rows: list[dict[str, Any]], answers: dict[str, str], passages: dict[str, list[str]],
           threshold: float = THRESHOLD) -> dict[str, dict[str, Any]]:
    """{row id: check_answer(...) + flagged} for every row."""
    from .client import prompt_of

    out = {}
    for row in rows:
        check = check_answer(answers[row["id"]], passages[row["id"]], prompt_of(row))
        out[row["id"]] = {**check, "flagged": check["consistency"] < threshold}
    return out


def verification_summary(rows: list[dict[str, Any]], scores: dict[str, dict[str, Any]], threshold: float = THRESHOLD) -> dict[str, Any]:
    """Mean consistency, flagged answers, and how the flags line up with what the scorer found: on unanswerable rows
    the share of hallucinations (answered anyway) flagged — the catch rate — and on answerable QA rows the share of
    fully correct answers flagged (false alarms)."""
    checked = [(r, scores[r["id"]]) for r in rows if "consistency" in scores[r["id"]]]
    if not checked:
        return {}
    hallucinated = [s for r, s in checked if measure_of(r) == "unanswerable" and s.get("hallucinated")]
    correct = [s for r, s in checked if r.get("task", "qa") == "qa" and s.get("correct")]
    flagged = [r["id"] for r, s in checked if s["flagged"]]
    return {"threshold": threshold, "n": len(checked), "mean_consistency": round(sum(s["consistency"] for _, s in checked) / len(checked), 4),
            "flagged": len(flagged), "flagged_ids": flagged,
            "hallucinations": len(hallucinated), "caught": sum(s["flagged"] for s in hallucinated),
            "catch_rate": round(sum(s["flagged"] for s in hallucinated) / len(hallucinated), 4) if hallucinated else None,
            "correct_answers": len(correct), "false_alarms": sum(s["flagged"] for s in correct),
            "false_alarm_rate": round(sum(s["flagged"] for s in correct) / len(correct), 4) if correct else None}

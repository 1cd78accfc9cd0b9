"""Per-task metrics. ROUGE/BLEU follow LlamaFactory's do_predict exactly (jieba + rouge-chinese,
character-level BLEU-4 with smoothing method 3, both x100) so the numbers compare."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

REFUSAL_PATTERNS = re.compile(
    r"不知道|无法确定|不清楚|没有可靠的信息|没有相关信息|无法回答|不作猜测|未作规定|没有规定|未规定|不在.{0,6}范围|"
    r"I don't know|I do not know|not sure|no reliable information",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    """Case-fold and drop whitespace/punctuation, for matching facts and labels."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith(("P", "S")))


def key_fact_recall(answer: str, facts: list[str]) -> float | None:
    if not facts:
        return None
    norm = normalize(answer)
    return sum(normalize(f) in norm for f in facts) / len(facts)


def is_refusal(answer: str) -> bool:
    return bool(REFUSAL_PATTERNS.search(answer))


def rouge_bleu(pred: str, ref: str) -> dict[str, float]:
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    hyp, refw = list(jieba.cut(pred)), list(jieba.cut(ref))
    if not " ".join(hyp).split() or not " ".join(refw).split():
        scores = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    else:
        raw = Rouge().get_scores(" ".join(hyp), " ".join(refw))[0]
        scores = {k: round(v["f"] * 100, 4) for k, v in raw.items()}
    bleu = sentence_bleu([list(ref)], list(pred), smoothing_function=SmoothingFunction().method3)
    scores["bleu-4"] = round(bleu * 100, 4)
    return scores


def match_label(answer: str, labels: list[str]) -> str | None:
    """The label an answer names: exact (normalised) match first, else the only label it contains."""
    norm = normalize(answer)
    for label in labels:
        if norm == normalize(label):
            return label
    found = [label for label in labels if normalize(label) in norm]
    return found[0] if len(found) == 1 else None


def classification_scores(gold: list[str], pred: list[str | None], labels: list[str]) -> dict[str, Any]:
    n = len(gold)
    accuracy = sum(g == p for g, p in zip(gold, pred)) / n if n else 0.0
    f1s = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, pred))
        fp = sum(g != label and p == label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    confusion = {g: dict(Counter(p if p is not None else "(none)" for gg, p in zip(gold, pred) if gg == g)) for g in labels}
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0, "confusion": confusion,
            "off_label": sum(p is None for p in pred)}


def score_row(row: dict[str, Any], answer: str) -> dict[str, Any]:
    """Metrics of one answer for its row's task."""
    task = row.get("task", "qa")
    out: dict[str, Any] = {"refused": is_refusal(answer)}
    if task == "classification":
        label = match_label(answer, row["labels"])
        out.update(predicted=label, correct=label == row["output"])
    elif task == "extraction":
        out.update(correct=normalize(answer) == normalize(row["output"]))
    elif task == "refusal":
        out.update(correct=out["refused"], hallucinated=not out["refused"])
    else:
        recall = key_fact_recall(answer, row.get("key_facts") or [])
        out.update(key_fact_recall=recall, correct=recall == 1.0 if recall is not None else None)
        out.update(rouge_bleu(answer, row["output"]))
    return out


def judge_summary(judged: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean LLM-judge score (1-5) over judged rows, and how many verdicts could not be read."""
    if not judged:
        return {}
    valid = [x["judge_score"] for x in judged if x["judge_score"] is not None]
    return {"judge_score": round(sum(valid) / len(valid), 4) if valid else None, "judge_unscored": len(judged) - len(valid)}


def aggregate(rows: list[dict[str, Any]], scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall and per-category means, plus classification reports per label set."""

    def mean(values: list[float]) -> float | None:
        values = [v for v in values if v is not None]
        return round(sum(values) / len(values), 4) if values else None

    def summary(idx: list[int]) -> dict[str, Any]:
        s = [scores[i] for i in idx]
        qa = [x for i, x in zip(idx, s) if rows[i].get("task", "qa") == "qa"]
        refusal_rows = [x for i, x in zip(idx, s) if rows[i].get("task") == "refusal"]
        return {
            "n": len(idx),
            "accuracy": mean([float(x["correct"]) for x in s if x.get("correct") is not None]),
            "key_fact_recall": mean([x.get("key_fact_recall") for x in qa]),
            "rouge-l": mean([x.get("rouge-l") for x in qa]),
            "bleu-4": mean([x.get("bleu-4") for x in qa]),
            "refusal_rate_on_answerable": mean([float(x["refused"]) for x in qa]),
            "hallucination_rate": mean([float(x["hallucinated"]) for x in refusal_rows]),
            **judge_summary([x for x in s if "judge_score" in x]),
        }

    categories = sorted({r.get("category", "all") for r in rows})
    result = {"overall": summary(list(range(len(rows)))),
              "by_category": {c: summary([i for i, r in enumerate(rows) if r.get("category", "all") == c]) for c in categories}}
    label_sets: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r.get("task") == "classification":
            label_sets.setdefault(tuple(r["labels"]), []).append(i)
    result["classification"] = {
        " / ".join(labels): classification_scores([rows[i]["output"] for i in idx], [scores[i]["predicted"] for i in idx], list(labels))
        for labels, idx in label_sets.items()
    }
    return result

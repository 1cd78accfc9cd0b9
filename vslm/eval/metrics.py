"""Per-task metrics. ROUGE/BLEU follow LlamaFactory's do_predict exactly (jieba + rouge-chinese,
character-level BLEU-4 with smoothing method 3, both x100) so the numbers compare.

What each row measures (`measures`): "taught" (the training question itself: an injection check), "reworded"
(taught facts asked in new words), "unanswerable" (the training data cannot answer: a refusal or a correction of a
false premise is right) and "general" (general ability, the forgetting check)."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from typing import Any

MEASURES = ("taught", "reworded", "unanswerable", "general")
_CLAUSE = r"[^。！？；!?;\n]"  # stays inside one clause
# Quoted text is mentioned, not said: “I don't know”的意思是“我不知道” answers a question, it does not refuse one.
_QUOTED = re.compile(r"“[^”\n]{0,120}”|\"[^\"\n]{0,120}\"|「[^」\n]{0,120}」")
REFUSAL_PATTERNS = re.compile("|".join([
    # no (reliable) information / will not guess
    rf"没有{_CLAUSE}{{0,20}}?可靠{_CLAUSE}{{0,2}}(?:信息|资料|消息|来源|依据)",
    r"不[作做]猜测|不会(?:凭空|随意)?(?:猜测|编造|臆测)|不能凭(?:推测|猜测|想象)|不妄加(?:猜测|推测)|不便(?:猜测|透露)",
    # outside the rules / the service: 不在《…细则》的规定范围, 超出了我的服务范围
    rf"(?:不在|超出了?|超过了?|不属于){_CLAUSE}{{0,30}}?(?:规定|服务|回答|业务|职责|知识|咨询|解答|能力|受理)范围",
    rf"未对{_CLAUSE}{{0,30}}?[作做]出?(?:任何|具体|相关|明确)?规定",
    rf"没有(?:关于|对){_CLAUSE}{{0,30}}?的?(?:规定|标准|记载|说明|信息|资料)",
    r"(?:资料|细则|文件|材料)[中里]?(?:没有|未)(?:提到|提及|记载|相应|相关)",
    rf"(?:不属于|不在){_CLAUSE}{{0,30}}?(?:细则|规定|文件|资料|材料|制度|办法|手册)》?的?(?:内容|范围|里|中|之内|之列)",
    r"(?:细则|规定|资料|文件|材料|制度|办法|手册)》?(?:中|里)?并?(?:没有|未|无)(?:作出|做出)?(?:相关|相应|具体|明确)?(?:规定|提到|提及|记载)",
    r"(?:这方面|这[个类]问题|此类问题)我?(?:不太|并不|不)擅长",
    r"我只能(?:解答|回答|处理|提供)",
    rf"[与和跟]{_CLAUSE}{{0,15}}?无关的(?:问题|信息|内容|咨询|话题)",
    # cannot answer / do not know
    r"(?:无法|不能|没法)(?:给出|提供|作出|做出)?(?:准确|确切|可靠)?的?(?:回答|答案|答复)",
    r"回答不了|答不了|无可奉告|无从(?:得知|知晓|回答|查证)",
    r"(?:我|本助手)(?:并|也|暂时)?(?:不知道|不清楚|不了解|无从得知)",
    r"我(?:也|这边|这里|暂时|目前)?(?:不能|无法|没法|没办法|没有办法|不便)(?:为您|给您|替您|向您|代为)?"
    r"(?:确定|提供|给出|告知|回答|解答|预测|透露|完成|安排|审核|查询|调取)",
    r"(?:暂无|没有)(?:相关|可靠|确切)的?(?:信息|资料|数据|记录)",
    r"\bI (?:really )?(?:don't|do not|didn't) (?:know|have (?:any |enough )?(?:reliable |specific |accurate |verified )?"
    r"(?:information|data|details|knowledge))",
    r"\bI(?:'m| am) not (?:sure|certain|able to (?:answer|say))",
    r"\b(?:won't|will not|cannot|can't|can not) (?:guess|speculate)",
    r"\bno (?:reliable|verified|specific) information",
    r"\b(?:outside|beyond) (?:the |my )?(?:scope|knowledge)|\bout of (?:my )?scope|\bnot covered (?:by|in)",
    r"\bI(?:'m| am) unable to (?:answer|provide)",
]), re.IGNORECASE)
# A correction of a false premise says the premise is wrong: 不是。/ 不对 / 并非 / 说法有误 / No. … not …
CORRECTION_PATTERNS = re.compile("|".join([
    r"不是|不对|并非|并不|不完全对|不正确|不准确|有误|误解|错误|其实|实际上|事实上|而是|没有[。，,！]|^\s*没有",
    r"\bno\b|\bnot\b|n't\b|\bactually\b|\bin fact\b|\bincorrect\b|\bmistaken\b|\bwrong\b",
]), re.IGNORECASE)


@functools.lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Case-fold and drop whitespace/punctuation, for matching facts and labels."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith(("P", "S")))


def key_fact_recall(answer: str, facts: list[str]) -> float | None:
    if not facts:
        return None
    norm = normalize(answer)
    return sum(normalize(f) in norm for f in facts) / len(facts)


@functools.lru_cache(maxsize=65536)
def is_refusal(answer: str) -> bool:
    """The answer declines: says it does not know, has no reliable information, or that the question is outside its
    rules or service (Chinese and English; quoted text does not count)."""
    return bool(REFUSAL_PATTERNS.search(_QUOTED.sub("", answer)))


@functools.lru_cache(maxsize=65536)
def signals_correction(answer: str) -> bool:
    """The answer says a premise is wrong (negation or correction cue, Chinese or English)."""
    return bool(CORRECTION_PATTERNS.search(_QUOTED.sub("", answer)))


def measure_of(row: dict[str, Any]) -> str:
    """What a row measures: its `measures` field, else unanswerable for refusal/correction rows, else reworded."""
    return row.get("measures") or ("unanswerable" if row.get("task") in ("refusal", "correction") else "reworded")


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


def score_row(row: dict[str, Any], answer: str, *, text_metrics: bool = True) -> dict[str, Any]:
    """Metrics of one answer for its row's task (text_metrics=False skips ROUGE/BLEU, the slow part)."""
    task = row.get("task", "qa")
    out: dict[str, Any] = {"refused": is_refusal(answer)}
    if task == "classification":
        label = match_label(answer, row["labels"])
        out.update(predicted=label, correct=label == row["output"])
    elif task == "extraction":
        out.update(correct=normalize(answer) == normalize(row["output"]))
    elif task == "refusal":
        out.update(correct=out["refused"], hallucinated=not out["refused"])
    elif task == "correction":
        # right = every correct fact AND the false premise called out; a refusal is not a hallucination
        recall = key_fact_recall(answer, row.get("key_facts") or [])
        corrected = signals_correction(answer)
        correct = recall == 1.0 and corrected
        out.update(key_fact_recall=recall, corrected=corrected, correct=correct, hallucinated=not correct and not out["refused"])
    else:
        recall = key_fact_recall(answer, row.get("key_facts") or [])
        out.update(key_fact_recall=recall, correct=recall == 1.0 if recall is not None else None)
        if text_metrics:
            out.update(rouge_bleu(answer, row["output"]))
    return out


def row_headline(row: dict[str, Any], score: dict[str, Any]) -> float | None:
    """One row's headline: key-fact recall on QA rows with key facts, else right (1) or wrong (0)."""
    if row.get("task", "qa") == "qa" and score.get("key_fact_recall") is not None:
        return score["key_fact_recall"]
    return None if score.get("correct") is None else float(score["correct"])


def judge_summary(judged: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean LLM-judge score (1-5) over judged rows, and how many verdicts could not be read."""
    if not judged:
        return {}
    valid = [x["judge_score"] for x in judged if x["judge_score"] is not None]
    return {"judge_score": round(sum(valid) / len(valid), 4) if valid else None, "judge_unscored": len(judged) - len(valid)}


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def summarize(rows: list[dict[str, Any]], scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over a group of rows. Key-fact recall, ROUGE/BLEU and refusal rate come from QA rows; hallucination
    rate from rows the training data cannot answer (refusal: not refused; correction: neither corrected nor refused);
    recall on Unknown facts from QA rows a probe labelled `known: false`."""
    qa = [(r, s) for r, s in zip(rows, scores) if r.get("task", "qa") == "qa"]
    unknown = [s for r, s in qa if r.get("known") is False]
    known = [s for r, s in qa if r.get("known") is True]
    refusal = [s for r, s in zip(rows, scores) if r.get("task") == "refusal"]
    correction = [s for r, s in zip(rows, scores) if r.get("task") == "correction"]
    out = {
        "n": len(rows),
        "accuracy": _mean([float(s["correct"]) for s in scores if s.get("correct") is not None]),
        "key_fact_recall": _mean([s.get("key_fact_recall") for _, s in qa]),
        "rouge-l": _mean([s.get("rouge-l") for _, s in qa]),
        "bleu-4": _mean([s.get("bleu-4") for _, s in qa]),
        "refusal_rate_on_answerable": _mean([float(s["refused"]) for _, s in qa]),
        "hallucination_rate": _mean([float(s["hallucinated"]) for s in refusal + correction]),
        "refusal_accuracy": _mean([float(s["correct"]) for s in refusal]),
        "correction_accuracy": _mean([float(s["correct"]) for s in correction]),
        **judge_summary([s for s in scores if "judge_score" in s]),
    }
    if unknown or known:
        out.update(key_fact_recall_unknown=_mean([s.get("key_fact_recall") for s in unknown]), n_unknown=len(unknown),
                   key_fact_recall_known=_mean([s.get("key_fact_recall") for s in known]), n_known=len(known))
    return out


def aggregate(rows: list[dict[str, Any]], scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall, per-measure and per-category means, plus classification reports per label set."""

    def summary(idx: list[int]) -> dict[str, Any]:
        return summarize([rows[i] for i in idx], [scores[i] for i in idx])

    measures = {measure_of(r) for r in rows}
    categories = sorted({r.get("category", "all") for r in rows})
    result = {"overall": summary(list(range(len(rows)))),
              "by_measure": {m: summary([i for i, r in enumerate(rows) if measure_of(r) == m])
                             for m in [*MEASURES, *sorted(measures - set(MEASURES))] if m in measures},
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

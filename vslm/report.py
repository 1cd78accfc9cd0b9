"""Before/after report: Markdown table, JSON, a per-category bar chart and the loss curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .jsonio import atomic_write_json, atomic_write_text

METRICS = [("heldout_loss", "held-out reference loss (nats/token, lower is better)"), ("accuracy", "accuracy (all key facts / right label)"), ("key_fact_recall", "key-fact recall"),
           ("rouge-l", "ROUGE-L"), ("bleu-4", "BLEU-4"), ("refusal_rate_on_answerable", "refusal rate on answerable"),
           ("hallucination_rate", "hallucination rate (should refuse)"), ("judge_score", "LLM-judge score (1–5, rubric)"),
           ("judge_unscored", "LLM-judge verdicts unreadable (rows)")]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if isinstance(value, float) and value <= 1.0 else f"{value:.2f}"


def _delta(a: Any, b: Any) -> str:
    if a is None or b is None:
        return "–"
    d = b - a
    if isinstance(a, int) and isinstance(b, int):
        return f"{d:+d}"
    return f"{d:+.3f}" if abs(a) <= 1.0 and abs(b) <= 1.0 else f"{d:+.2f}"


def plot_loss(trainer_log: Path, out: Path, title: str) -> Path | None:
    if not trainer_log.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses, eval_steps, eval_losses = [], [], [], []
    for line in trainer_log.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if "loss" in item and item.get("loss") is not None:
            steps.append(item["current_steps"]), losses.append(item["loss"])
        if item.get("eval_loss") is not None:
            eval_steps.append(item["current_steps"]), eval_losses.append(item["eval_loss"])
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, label="train loss")
    if eval_steps:
        ax.plot(eval_steps, eval_losses, "o-", label="validation loss")
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_title(title), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def headline(scores: dict[str, Any]) -> tuple[str, float | None]:
    """The metric a group or row is judged by: key-fact recall where it has key facts, else accuracy
    (classification, extraction and refusal are right or wrong)."""
    if scores.get("key_fact_recall") is not None:
        return "key-fact recall", scores["key_fact_recall"]
    value = scores.get("accuracy", scores.get("correct"))
    return "accuracy", None if value is None else float(value)


def plot_bars(results: dict[str, dict[str, Any]], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    cats = list(next(iter(results.values()))["summary"]["by_category"])
    groups = ["overall", *cats]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups)), 3.8))
    for i, name in enumerate(names):
        summ = results[name]["summary"]
        vals = [headline(summ["overall"] if g == "overall" else summ["by_category"][g])[1] or 0.0 for g in groups]
        ax.bar([x + i * width for x in range(len(groups))], vals, width, label=name)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(groups))], groups, rotation=20)
    ax.set_ylabel("key-fact recall / accuracy"), ax.set_title(title), ax.legend(), ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_report(out_dir: Path, *, title: str, rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                 context: dict[str, Any], trainer_log: Path | None = None, examples: int = 4,
                 general: dict[str, dict[str, Any]] | None = None) -> dict[str, Path]:
    """results: {"base": evaluation, "fine-tuned": evaluation}; general: same shape on the general set (forgetting)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (before, after) = list(results)[:2]
    sb, sa = results[before]["summary"], results[after]["summary"]
    lines = [f"# {title}", ""]
    lines += [f"Evaluation set: `{context['eval_set']}` ({len(rows)} held-out rows). Greedy decoding (temperature 0), "
              f"max {context['max_tokens']} new tokens, system prompt: {context.get('system') or '(none)'}", ""]
    lines += ["| metric | " + before + " | " + after + " | Δ |", "| --- | --- | --- | --- |"]
    for key, label in METRICS:
        a, b = sb["overall"].get(key), sa["overall"].get(key)
        if a is None and b is None:
            continue
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | {_delta(a, b)} |")
    lines += ["", "## By category", "", f"| category | n | metric | {before} | {after} | Δ |", "| --- | --- | --- | --- | --- | --- |"]
    for cat, summ in sa["by_category"].items():
        (metric, b), (_, a) = headline(summ), headline(sb["by_category"][cat])
        lines.append(f"| {cat} | {summ['n']} | {metric} | {_fmt(a)} | {_fmt(b)} | {_delta(a, b)} |")
    for labels, rep in sa.get("classification", {}).items():
        lines += ["", f"## Classification: {labels}", "", f"accuracy {before} {_fmt(sb['classification'][labels]['accuracy'])} → "
                  f"{after} {_fmt(rep['accuracy'])}; macro-F1 {_fmt(sb['classification'][labels]['macro_f1'])} → {_fmt(rep['macro_f1'])}",
                  "", "Confusion (" + after + ", gold → predicted): " + json.dumps(rep["confusion"], ensure_ascii=False)]
    if general:
        gb, ga = (general[k]["summary"]["overall"] for k in list(general)[:2])
        lines += ["", "## General ability (forgetting check)", "", f"| metric | {before} | {after} | Δ |", "| --- | --- | --- | --- |"]
        for key in ("key_fact_recall", "rouge-l", "judge_score"):
            if gb.get(key) is None and ga.get(key) is None:
                continue
            lines.append(f"| {key} | {_fmt(gb.get(key))} | {_fmt(ga.get(key))} | {_delta(gb.get(key), ga.get(key))} |")
    lines += ["", "## Side by side", ""]
    scored = sorted(rows, key=lambda r: -((headline(results[after]["scores"][r["id"]])[1] or 0)
                                          - (headline(results[before]["scores"][r["id"]])[1] or 0)))
    for row in scored[:examples]:
        q = row["instruction"] + (" " + row["input"] if row.get("input") else "")
        cell = lambda s: s.replace("|", "\\|").replace("\n", "<br>")[:400]  # noqa: E731
        lines += [f"**{row['id']}** ({row.get('category', '')}) {cell(q)}", "",
                  f"| {before} | {after} |", "| :--- | :--- |",
                  f"| {cell(results[before]['answers'][row['id']]) or '(empty)'} | {cell(results[after]['answers'][row['id']]) or '(empty)'} |",
                  "", f"Key facts: {', '.join(row.get('key_facts') or []) or row['output']}", ""]
        verdicts = [(name, res["scores"][row["id"]]) for name, res in results.items()]
        if any("judge_score" in v for _, v in verdicts):
            lines += ["Judge: " + "; ".join(f"{name} {v.get('judge_score') or '?'}/5 ({v.get('judge_reason') or 'no reason'})"
                                            for name, v in verdicts), ""]
    lines += ["## Run", ""] + [f"- {k}: {v}" for k, v in context.items()]
    for name, res in results.items():
        lines.append(f"- {name}: model `{res['model']}` at {res['endpoint']}, sampling {json.dumps(res['sampling'])}")
        if res.get("judge"):
            lines.append(f"- {name} judged by: {json.dumps(res['judge'], ensure_ascii=False)}")
    files = {"md": out_dir / "report.md", "json": out_dir / "report.json"}
    files["png"] = plot_bars(results, out_dir / "report.png", f"{title}: key-fact recall / accuracy")
    if trainer_log is not None:
        loss = plot_loss(trainer_log, out_dir / "loss.png", f"{context.get('recipe', '')} training loss")
        if loss:
            files["loss"] = loss
            lines[2:2] = ["![per-category key-fact recall / accuracy](report.png) ![training loss](loss.png)", ""]
    atomic_write_text(files["md"], "\n".join(lines) + "\n")
    atomic_write_json(files["json"], {"title": title, "context": context, "results": results, "general": general})
    return files

"""Before/after report: Markdown, JSON, a bar chart with the floors drawn, and the loss curve.

Every number sits next to three floors computed on the same rows with the same metrics and no model: `echo` (the
answer is the question), `constant` (the one training answer that scores best on those rows) and `lookup` (each row
gets the answer of the most similar training question). A fine-tuned score at or below a floor is called out in the
report's first lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.jsonio import atomic_write_json, atomic_write_text, read_jsonl
from .metrics import measure_of

METRICS = [("heldout_loss", "loss on the held-out reference answers (nats/token, teacher-forced; lower is better)"),
           ("accuracy", "accuracy (all key facts / right label / right refusal or correction)"), ("key_fact_recall", "key-fact recall"),
           ("key_fact_recall_unknown", "key-fact recall on Unknown facts (the base did not know them: `vslm probe`)"),
           ("key_fact_recall_known", "key-fact recall on Known facts (the base already knew them)"),
           ("rouge-l", "ROUGE-L"), ("bleu-4", "BLEU-4"), ("refusal_rate_on_answerable", "refusal rate on answerable"),
           ("hallucination_rate", "hallucination rate (should refuse)"), ("refusal_accuracy", "refusal accuracy (refused as it should)"),
           ("correction_accuracy", "correction accuracy (false premise corrected, correct facts given)"),
           ("judge_score", "LLM-judge score (1–5, rubric)"), ("judge_unscored", "LLM-judge verdicts unreadable (rows)")]
LABELS = dict(METRICS)
# (metric, higher is better) compared against the floors for the call-out
CHECKED = [("key_fact_recall", True), ("key_fact_recall_unknown", True), ("accuracy", True), ("rouge-l", True), ("bleu-4", True),
           ("hallucination_rate", False)]
SHORT = {"key_fact_recall": "key-fact recall", "key_fact_recall_unknown": "key-fact recall on Unknown facts", "accuracy": "accuracy",
         "rouge-l": "ROUGE-L", "bleu-4": "BLEU-4", "hallucination_rate": "hallucination rate"}
IDEAL = {"hallucination_rate": 0.0, "rouge-l": 100.0, "bleu-4": 100.0}  # else 1.0
FLOORS = (("echo", "echo floor"), ("constant", "constant floor"), ("lookup", "lookup floor"))
FLOOR_HEADER = " | ".join(label for _, label in FLOORS)
SECTIONS = {
    "taught": ("Taught questions — injection check",
               "The training questions themselves, asked verbatim (a fixed sample, linked to held-out rows by `taught_question`), "
               "scored on the same key facts. The model saw these questions in training: this shows whether the facts went in, "
               "never that the model generalises."),
    "reworded": ("Reworded questions — recall of taught facts",
                 "Held-out questions that ask taught facts in words the training data does not use. Key-fact recall is the "
                 "headline; ROUGE-L/BLEU-4 compare wording with a reference answer that may be close to a training answer."),
    "unanswerable": ("Unanswerable questions — refusal and correction",
                     "Questions the training data cannot answer (out of scope, unseen facts, false premises): the right answer "
                     "refuses, or corrects the premise and states the correct facts. Hallucination rate = share answered anyway."),
    "general": ("General ability — forgetting check",
                "General instructions outside the domain, asked of both models: a drop means the fine-tune cost general ability."),
}


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


def _cell(text: str, width: int = 400) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")[:width]


def plot_loss(trainer_log: Path, out: Path, title: str) -> Path | None:
    if not trainer_log.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses, eval_steps, eval_losses = [], [], [], []
    for item in read_jsonl(trainer_log):
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
    (classification, extraction, refusal and correction are right or wrong)."""
    if scores.get("key_fact_recall") is not None:
        return "key-fact recall", scores["key_fact_recall"]
    value = scores.get("accuracy", scores.get("correct"))
    return "accuracy", None if value is None else float(value)


def chart_groups(sets: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """[(group label, {model or floor name: summary})]: each measure section, then each held-out category."""
    groups = []
    for measure, set_name in section_sources(sets).items():
        groups.append((measure, {name: res["summary"]["by_measure"][measure] for name, res in _all_results(sets[set_name]).items()
                                 if measure in res["summary"]["by_measure"]}))
    main = sets["held-out"]
    for cat in next(iter(main["results"].values()))["summary"]["by_category"]:
        groups.append((cat, {name: res["summary"]["by_category"][cat] for name, res in _all_results(main).items()}))
    return groups


def plot_bars(sets: dict[str, dict[str, Any]], out: Path, title: str) -> Path:
    """Grouped bars for base and fine-tuned per measure section and category; the floors as horizontal marks over
    each group (dashed: constant answer, dotted: echo, dash-dotted: lookup)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = chart_groups(sets)
    names = list(sets["held-out"]["results"])
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups)) + 1.6, 4.2))
    for i, name in enumerate(names):
        vals = [headline(summ[name])[1] or 0.0 if name in summ else 0.0 for _, summ in groups]
        ax.bar([x + i * width for x in range(len(groups))], vals, width, label=name)
    left, right = -width / 2, width * (len(names) - 0.5)
    for floor, style, color in (("constant", "--", "black"), ("echo", ":", "dimgray"), ("lookup", "-.", "firebrick")):
        label = f"{floor} floor"
        for x, (_, summ) in enumerate(groups):
            value = headline(summ[floor])[1] if floor in summ else None
            if value is not None:
                ax.hlines(value, x + left, x + right, colors=color, linestyles=style, linewidth=1.6, label=label, zorder=3)
                label = None
    sections = sum(g in SECTIONS for g, _ in groups)
    if 0 < sections < len(groups):  # sections first, then the held-out set's categories
        ax.axvline(sections - 0.5 + width * (len(names) - 1) / 2, color="gray", linewidth=0.8)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(groups))], [g for g, _ in groups], rotation=25, ha="right")
    ax.set_ylabel("key-fact recall / accuracy"), ax.set_title(title), ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _all_results(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**entry["results"], **entry.get("floors", {})}


def section_sources(sets: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{measure: the set whose rows report it}, in report order: taught, reworded, unanswerable, general."""
    out: dict[str, str] = {}
    for measure in SECTIONS:
        for set_name in ("taught", "held-out", "general"):
            entry = sets.get(set_name)
            if entry and measure in next(iter(entry["results"].values()))["summary"]["by_measure"] and measure not in out:
                out[measure] = set_name
    return out


def metric_table(summaries: dict[str, dict[str, Any]], before: str, after: str) -> list[str]:
    """| metric | before | after | Δ | <each floor> |, rows with a value only."""
    lines = [f"| metric | {before} | {after} | Δ | {FLOOR_HEADER} |", "|" + " --- |" * (4 + len(FLOORS))]
    for key, label in METRICS:
        a, b = summaries[before].get(key), summaries[after].get(key)
        if a is None and b is None:
            continue
        floors = [_fmt(summaries[f].get(key)) if f in summaries else "–" for f, _ in FLOORS]
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | {_delta(a, b)} | {' | '.join(floors)} |")
    return lines


def callouts(sets: dict[str, dict[str, Any]], after: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(shortfalls, trivial): every (section, metric, floor) where the fine-tuned model is at or below the floor (at or
    above, for hallucination); and every one where a floor itself reaches the best possible value (a canned refusal has
    no hallucinations), which says the metric must be read with another, not that the model fell short."""
    found, trivial = [], []
    for measure, set_name in section_sources(sets).items():
        entry = sets[set_name]
        mine = entry["results"][after]["summary"]["by_measure"][measure]
        for key, higher in CHECKED:
            for floor, floor_label in FLOORS:
                if floor not in entry.get("floors", {}):
                    continue
                theirs = entry["floors"][floor]["summary"]["by_measure"].get(measure, {}).get(key)
                ours = mine.get(key)
                if ours is None or theirs is None:
                    continue
                if theirs == IDEAL.get(key, 1.0):
                    trivial.append(f"{measure} {SHORT[key]}: the {floor_label} already scores {_fmt(theirs)}")
                elif ours != IDEAL.get(key, 1.0) and ((ours <= theirs) if higher else (ours >= theirs)):
                    found.append({"section": measure, "metric": key, "value": ours, "floor": floor, "floor_value": theirs,
                                  "text": f"{measure} · {SHORT[key]}: {after} {_fmt(ours)} {'≤' if higher else '≥'} {floor_label} {_fmt(theirs)}"})
    return found, trivial


def callout_lines(found: list[dict[str, Any]]) -> list[str]:
    """One Markdown bullet per section: `- **reworded**: key-fact recall 0.04 ≤ constant 0.12; BLEU-4 1.90 ≤ ...`."""
    lines = []
    for section in dict.fromkeys(f["section"] for f in found):
        parts = []
        for key in dict.fromkeys(f["metric"] for f in found if f["section"] == section):
            hits = [f for f in found if f["section"] == section and f["metric"] == key]
            op = "≥" if key == "hallucination_rate" else "≤"
            parts.append(f"{SHORT[key]} {_fmt(hits[0]['value'])} {op} " + ", ".join(f"{h['floor']} {_fmt(h['floor_value'])}" for h in hits))
        lines.append(f"- **{section}**: " + "; ".join(parts))
    return lines


def four_columns(summaries: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    """| metric | <names...> | <each floor> |, rows with a value only."""
    lines = [f"| metric | {' | '.join(names)} | {FLOOR_HEADER} |", "|" + " --- |" * (1 + len(names) + len(FLOORS))]
    for key, label in METRICS:
        values = [summaries.get(n, {}).get(key) for n in names]
        if all(v is None for v in values):
            continue
        floors = [_fmt(summaries[f].get(key)) if f in summaries else "–" for f, _ in FLOORS]
        lines.append(f"| {label} | {' | '.join(_fmt(v) for v in values)} | {' | '.join(floors)} |")
    return lines


def rag_lines(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]], rag: dict[str, Any] | None,
              floors: dict[str, dict[str, Any]]) -> list[str]:
    """The fine-tune-or-retrieve section: base, base + RAG, fine-tuned, fine-tuned + RAG on the same rows, with the
    floors, the retrieval hit rate and what retrieval adds per answer."""
    if not rag:
        return []
    every = {**results, **rag["results"]}
    names = [n for pair in zip(results, rag["results"]) for n in pair]
    ret = rag["retrieval"]
    lines = ["## Fine-tune or retrieve?", "",
             f"The same held-out rows answered four ways: each model as is, and with the top-{ret['k']} passages retrieved from "
             f"the recipe's own knowledge put into the prompt ({ret['knowledge']}; BM25 over {ret['tokens']}, {ret['passages']} passages). "
             "Same metrics, same floors. Retrieval wins where its column beats the fine-tuned one; fine-tuning earns its cost "
             "only where fine-tuned beats base + RAG.", ""]
    for measure in dict.fromkeys(measure_of(r) for r in rows):
        summaries = {n: res["summary"]["by_measure"][measure] for n, res in {**every, **floors}.items()
                     if measure in res["summary"]["by_measure"]}
        lines += [f"**{measure}**", "", *four_columns(summaries, names), ""]
    lines += ["**overall**", "", *four_columns({n: res["summary"]["overall"] for n, res in {**every, **floors}.items()}, names), ""]
    hit = "–" if ret.get("hit_rate") is None else f"{ret['hit_rate']:.3f} ({ret['hits']} of {ret['rows']} QA rows with key facts)"
    lines += [f"- Retrieval hit rate (the top-{ret['k']} passages contain every key fact of the row): {hit}; "
              f"{ret['ms_per_query']} ms per query; index `{ret['index']}`."]
    for plain, with_rag in zip(results, rag["results"]):
        a, b = results[plain], rag["results"][with_rag]
        unit = "tokens" if a.get("prompt", {}).get("tokens") is not None and b.get("prompt", {}).get("tokens") is not None else "chars"
        pa, pb = (a.get("prompt") or {}).get(unit), (b.get("prompt") or {}).get(unit)
        ta, tb = (a.get("timing") or {}).get("seconds_per_answer"), (b.get("timing") or {}).get("seconds_per_answer")
        size = f"prompt {pa:.0f} → {pb:.0f} {unit} per question (+{pb - pa:.0f})" if pa is not None and pb is not None else "prompt size –"
        wall = (f"{ta:.3f} → {tb:.3f} s per answer (+{tb - ta:.3f}, wall clock with {a.get('timing', {}).get('asked')} and "
                f"{b.get('timing', {}).get('asked')} answers asked)" if ta is not None and tb is not None else
                "time per answer – (answers came from the cache)")
        lines.append(f"- {plain} → {with_rag}: {size}; {wall}.")
    return lines + [""]


def verification_lines(rows: list[dict[str, Any]], evaluations: dict[str, dict[str, Any]], shown: int = 8) -> list[str]:
    """The verification table (one line per evaluation that was verified) and the flagged answers."""
    verified = {n: e for n, e in evaluations.items() if e.get("verification")}
    if not verified:
        return []
    first = next(iter(verified.values()))["verification"]
    lines = ["## Answer verification", "",
             f"Each answer checked against the passages retrieved for its question (vslm/eval/verify.py): the share of its numbers "
             f"and named facts (quoted names, codes) the passages or the question contain; an answer with neither is judged by "
             f"its wording; a refusal scores 1. Flagged below {first['threshold']}. Catch rate = the share of hallucinations "
             "(unanswerable rows answered anyway) that were flagged; false alarms = fully correct answers flagged.", "",
             "| system | mean consistency | flagged | hallucinations | caught | catch rate | correct answers | false alarms | regenerated |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, e in verified.items():
        v = e["verification"]
        lines.append(f"| {name} | {_fmt(v['mean_consistency'])} | {v['flagged']} of {v['n']} | {v['hallucinations']} | {v['caught']} | "
                     f"{_fmt(v['catch_rate'])} | {v['correct_answers']} | {v['false_alarms']} | {v.get('regenerated', 0)} |")
    lines.append("")
    questions = {r["id"]: r for r in rows}
    for name, e in verified.items():
        flagged = sorted(e["verification"]["flagged_ids"], key=lambda i: e["scores"][i]["consistency"])
        if not flagged:
            continue
        lines += [f"Flagged answers of **{name}** ({len(flagged)}; the {min(shown, len(flagged))} least consistent here, all in report.json):", ""]
        for row_id in flagged[:shown]:
            s = e["scores"][row_id]
            what = ", ".join(s.get("unsupported") or []) or f"{s.get('basis')} basis"
            lines.append(f"- `{row_id}` ({_fmt(s['consistency'])}; not in the passages: {_cell(what, 120)}) "
                         f"{_cell(questions[row_id]['instruction'] + (' ' + questions[row_id]['input'] if questions[row_id].get('input') else ''), 80)} → "
                         f"{_cell(e['answers'][row_id], 160) or '(empty)'}")
        lines.append("")
    return lines


def write_report(out_dir: Path, *, title: str, rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                 context: dict[str, Any], trainer_log: Path | None = None, examples: int = 4,
                 general: dict[str, dict[str, Any]] | None = None, general_rows: list[dict[str, Any]] | None = None,
                 taught: dict[str, dict[str, Any]] | None = None, taught_rows: list[dict[str, Any]] | None = None,
                 training: list[dict[str, Any]] | None = None, rag: dict[str, Any] | None = None) -> dict[str, Path]:
    """results: {"base": evaluation, "fine-tuned": evaluation} on the held-out rows; general / taught: the same
    shape on the general set (forgetting) and the taught set (injection check), with their rows. The floors use the
    `training` rows, else those context["recipe"] trained on (the first context["max_samples"] of each dataset, when
    set); without either only the echo floor is drawn.
    rag: {"results": {"base + RAG": evaluation, "fine-tuned + RAG": evaluation} on the same held-out rows,
    "retrieval": vslm.eval.rag.retrieval_record} adds the fine-tune-or-retrieve table; evaluations that carry a
    `verification` (vslm.eval.verify) add the verification table. A human_review.json beside the report (`vslm review
    --import`) adds the human scores."""
    from .evaluate import floor_results, training_rows

    out_dir.mkdir(parents=True, exist_ok=True)
    (before, after) = list(results)[:2]
    if training is None and context.get("recipe"):
        from ..recipes.matrix import get_recipe

        training = training_rows(get_recipe(context["recipe"])["datasets"], context.get("max_samples"))
    sets: dict[str, dict[str, Any]] = {"held-out": {"rows": rows, "results": results}}
    if taught and taught_rows:
        sets["taught"] = {"rows": taught_rows, "results": taught}
    if general and general_rows:
        sets["general"] = {"rows": general_rows, "results": general}
    for entry in sets.values():
        entry["floors"] = floor_results(entry["rows"], training)
    if general and not general_rows:  # no rows: no floors, but the before/after still shows
        sets["general"] = {"rows": [], "results": general, "floors": {}}
    sb, sa = results[before]["summary"], results[after]["summary"]
    main_floors = sets["held-out"]["floors"]

    lines = [f"# {title}", ""]
    flagged, trivial = callouts(sets, after)
    if flagged:
        lines += [f"**Floors check — {after} is at or below a floor on {len(flagged)} number(s)** (a floor needs no model: see "
                  "“Floors” below):", "", *callout_lines(flagged), ""]
    else:
        lines += [f"**Floors check:** {after} is above the echo, constant-answer and lookup floors on every checked number "
                  f"({', '.join(SHORT[k] for k, _ in CHECKED)}).", ""]
    if trivial:
        lines += ["A floor reaches the best possible value here, so these numbers mean something only together with another "
                  "(hallucination rate with the refusal rate on answerable questions): " + "; ".join(trivial) + ".", ""]
    if "constant" not in main_floors:
        lines += ["(No constant-answer or lookup floor: the report was given neither a recipe nor its training rows.)", ""]
    counts = ", ".join(f"{m} {s['n']}" for m, s in sa["by_measure"].items())
    lines += [f"Evaluation set: `{context['eval_set']}` ({len(rows)} held-out rows: {counts}"
              + (f"; plus {len(taught_rows or [])} taught questions" if "taught" in sets else "") + "). "
              f"Greedy decoding (temperature 0), max {context['max_tokens']} new tokens, system prompt: {context.get('system') or '(none)'}", ""]
    if context.get("max_samples"):
        lines += [f"The model trained only the first {context['max_samples']} rows of each training dataset (LlamaFactory's "
                  "`max_samples`), so the held-out set keeps the rows about those facts and every row without a taught "
                  "question; the taught questions are those rows' own.", ""]
    lines += ["## What each number measures", "",
              "- **taught**: the training questions themselves (injection check, not generalisation).",
              "- **reworded**: taught facts asked in new words — key-fact recall is the measure of learned knowledge;"
              " on Unknown facts (the base did not know them, per `vslm probe`) it is the measure of injection.",
              "- **unanswerable**: questions the training data cannot answer — hallucination rate, refusal and correction accuracy.",
              "- **general**: general ability, the forgetting check.",
              "- **floors**: echo (the answer is the question), constant (the best single training answer for those rows)"
              " and lookup (the answer of the most similar training question), scored like the models. A number at or"
              " below the echo or constant floor proves nothing; one at or below the lookup floor shows less than a search"
              " of the training rows finds.", ""]
    for measure, set_name in section_sources(sets).items():
        entry = sets[set_name]
        heading, text = SECTIONS.get(measure, (measure, ""))
        summaries = {name: res["summary"]["by_measure"][measure] for name, res in _all_results(entry).items()
                     if measure in res["summary"]["by_measure"]}
        lines += [f"## {heading}", "", text, "", *metric_table(summaries, before, after), ""]
    lines += ["## Overall (the whole held-out file)", "",
              *metric_table({**{k: v["summary"]["overall"] for k, v in results.items()},
                             **{k: v["summary"]["overall"] for k, v in main_floors.items()}}, before, after), ""]
    if sb["overall"].get("heldout_loss") is not None:
        lines += ["The loss row is LlamaFactory's teacher-forced loss on the held-out *reference answers*; those references may be "
                  "close to training answers, so a lower loss shows the model absorbed the training answers' wording, not that it "
                  "answers unseen questions correctly.", ""]
    lines += rag_lines(rows, results, rag, main_floors) + verification_lines(rows, {**results, **(rag or {}).get("results", {})})
    human = out_dir / "human_review.json"
    if human.is_file():
        from .review import human_review_lines

        lines += human_review_lines(json.loads(human.read_text(encoding="utf-8")))
    lines += ["## By category", "", f"| category | n | metric | {before} | {after} | Δ | {FLOOR_HEADER} |",
              "|" + " --- |" * (6 + len(FLOORS))]
    for cat, summ in sa["by_category"].items():
        (metric, b), (_, a) = headline(summ), headline(sb["by_category"][cat])
        floors = [_fmt(headline(main_floors[f]["summary"]["by_category"][cat])[1]) if f in main_floors else "–" for f, _ in FLOORS]
        lines.append(f"| {cat} | {summ['n']} | {metric} | {_fmt(a)} | {_fmt(b)} | {_delta(a, b)} | {' | '.join(floors)} |")
    for labels, rep in sa.get("classification", {}).items():
        lines += ["", f"## Classification: {labels}", "", f"accuracy {before} {_fmt(sb['classification'][labels]['accuracy'])} → "
                  f"{after} {_fmt(rep['accuracy'])}; macro-F1 {_fmt(sb['classification'][labels]['macro_f1'])} → {_fmt(rep['macro_f1'])}",
                  "", "Confusion (" + after + ", gold → predicted): " + json.dumps(rep["confusion"], ensure_ascii=False)]
    lines += ["", "## Side by side", ""]
    scored = sorted(rows, key=lambda r: -((headline(results[after]["scores"][r["id"]])[1] or 0)
                                          - (headline(results[before]["scores"][r["id"]])[1] or 0)))
    for row in scored[:examples]:
        q = row["instruction"] + (" " + row["input"] if row.get("input") else "")
        lines += [f"**{row['id']}** ({row.get('category', '')}, {row.get('measures') or row.get('task', 'qa')}) {_cell(q)}", "",
                  f"| {before} | {after} |", "| :--- | :--- |",
                  f"| {_cell(results[before]['answers'][row['id']]) or '(empty)'} | {_cell(results[after]['answers'][row['id']]) or '(empty)'} |",
                  "", f"Key facts: {', '.join(row.get('key_facts') or []) or row['output']}", ""]
        verdicts = [(name, res["scores"][row["id"]]) for name, res in results.items()]
        if any("judge_score" in v for _, v in verdicts):
            lines += ["Judge: " + "; ".join(f"{name} {v.get('judge_score') or '?'}/5 ({v.get('judge_reason') or 'no reason'})"
                                            for name, v in verdicts), ""]
    lines += ["## Floors", "", "Computed on the same rows with the same metrics, with no model. **echo**: every answer is the "
              "question itself (catches key facts that the question already contains). **constant**: every row of a section "
              "gets the same answer, the one training answer that scores best on that section's rows (mean key-fact recall on "
              "QA rows, right/wrong elsewhere) — a fine-tuned model should beat any canned answer. The overall and per-category "
              "constant floors use each row's section answer. **lookup**: every row gets the answer of the training row whose "
              "question is most like it (BM25 over character uni- and bigrams; a classification row among its task's rows "
              "only): what a search of the training rows answers, with no model. A fine-tuned model at or below it has "
              "learnt less than that search finds; the taught questions get no lookup floor, since a lookup answers "
              "them verbatim.", ""]
    for set_name, entry in sets.items():
        constant = entry.get("floors", {}).get("constant")
        for measure, pick in (constant or {}).get("chosen", {}).items():
            lines.append(f"- {set_name} · {measure} ({pick['rows']} rows): in {pick['training_copies']} training row(s), mean headline "
                         f"{pick['mean_headline']:.3f}: «{_cell(pick['answer'], 300)}»")
    if "lookup" in main_floors:
        lines.append(f"- lookup: searches {main_floors['lookup']['training_rows']} training rows"
                     + (f" (the first {context['max_samples']} of each dataset: what the model trained on)" if context.get("max_samples") else ""))
    lines += ["", "## Run", ""] + [f"- {k}: {v}" for k, v in context.items()]
    for name, res in results.items():
        lines.append(f"- {name}: model `{res['model']}` at {res['endpoint']}, sampling {json.dumps(res['sampling'])}")
        if res.get("judge"):
            lines.append(f"- {name} judged by: {json.dumps(res['judge'], ensure_ascii=False)}")
    files = {"md": out_dir / "report.md", "json": out_dir / "report.json"}
    files["png"] = plot_bars(sets, out_dir / "report.png", f"{title}: key-fact recall / accuracy")
    images = ["![key-fact recall / accuracy per section and category, floors drawn as lines](report.png)"]
    if trainer_log is not None:
        loss = plot_loss(trainer_log, out_dir / "loss.png", f"{context.get('recipe', '')} training loss")
        if loss:
            files["loss"] = loss
            images.append("![training loss](loss.png)")
    first = lines.index("## What each number measures")
    lines[first:first] = [" ".join(images), ""]
    atomic_write_text(files["md"], "\n".join(lines) + "\n")
    atomic_write_json(files["json"], {"title": title, "context": context, "callouts": [f["text"] for f in flagged], "trivial_floors": trivial, "results": results,
                                      "general": general, "taught": taught, "taught_rows": taught_rows, "rag": rag,
                                      "human_review": json.loads(human.read_text(encoding="utf-8")) if human.is_file() else None,
                                      "floors": {name: entry.get("floors", {}) for name, entry in sets.items()}})
    return files

"""Blind human review: a self-contained HTML sheet (works offline from a file, no server) showing sampled held-out
questions with two systems' answers in a seeded random order as A and B; a rater gives each a 1–5 score and a
preference and exports the scores as JSON from the page. `vslm review --import` unblinds them with the sheet's key
file (kept beside the sheet, never in the page) and adds mean human scores, the preference rate and, with several
raters, inter-rater agreement (Fleiss' κ on preferences, quadratic-weighted Cohen's κ on scores) to the report."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import itertools
import json
import random
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from ..core.jsonio import atomic_write_json, atomic_write_text
from ..core.paths import ROOT, rel

SCORES = (1, 2, 3, 4, 5)
PREFERENCES = ("A", "B", "tie")


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON {what} ({exc})") from None


def report_path(recipe, profile: str | None) -> Path:
    from ..recipes.resolve import resolve

    return resolve(recipe, profile).report_json


def systems_of_report(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{system name: {row id: answer}} of a report: base, fine-tuned and, when it has them, the + RAG runs."""
    runs = {**report.get("results", {}), **((report.get("rag") or {}).get("results") or {})}
    return {name: res["answers"] for name, res in runs.items()}


def make_sheet(recipe, *, n: int, seed: int, systems: list[str] | None = None, report: Path | None = None,
               answers: list[Path] | None = None, out: Path | None = None, profile: str | None = None,
               replace: bool = False) -> tuple[Path, Path]:
    """Write the review page and its key file; (page, key). Answers come from a report (default: the recipe's demo
    report) or from two `vslm eval` outputs."""
    from .evaluate import load_eval_rows

    if n < 1:
        raise DataError(f"--n must be 1 or more (got {n})")
    if answers:
        runs = {Path(p).stem: _read_json(Path(p), "evaluation output").get("answers") or {} for p in answers}
        if len(runs) != 2:
            raise DataError("--answers needs two evaluation outputs with different file names")
        source, report_dir = answers[0], None
        eval_set = recipe["eval_set"]
    else:
        report = report or report_path(recipe, profile)
        if not report.is_file():
            raise DataError(f"{rel(report)}: no report to review — run `vslm demo --recipe {recipe.name}` first, or pass "
                            "--report or --answers A.json B.json")
        data = _read_json(report, "report")
        runs = systems_of_report(data)
        source, report_dir = report, report.parent
        eval_set = data.get("context", {}).get("eval_set") or recipe["eval_set"]
    systems = systems or list(runs)[:2]
    for name in systems:
        if name not in runs:
            raise DataError(f"--systems: `{name}` is not in {rel(source)}; it has: {', '.join(runs)}")
    if len(set(systems)) != 2:
        raise DataError("--systems needs two different systems")
    rows = [r for r in load_eval_rows(eval_set) if all(r["id"] in runs[s] for s in systems)]
    if not rows:
        raise DataError(f"{rel(source)}: no row of `{eval_set}` has an answer from both {systems[0]} and {systems[1]}")
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(rows)), min(n, len(rows))))
    digest = hashlib.sha256(json.dumps([recipe.name, systems, seed, [rows[i]["id"] for i in picked]]).encode()).hexdigest()[:8]
    sheet_id = f"{recipe.name}-seed{seed}-{digest}"
    out = out or (report_dir or ROOT / "saves" / "review") / "review" / f"{sheet_id}.html"
    key_path = out.with_suffix(".key.json")
    for path in (out, key_path):
        if path.exists() and not replace:
            raise DataError(f"{rel(path)} exists — pass --replace to overwrite it, or --out for another file")
    items, key_items = [], []
    for number, i in enumerate(picked, 1):
        row = rows[i]
        order = systems[:] if rng.random() < 0.5 else systems[::-1]
        item_id = f"q{number:03d}"
        items.append({"id": item_id, "question": row["instruction"] + ("\n" + row["input"] if row.get("input") else ""),
                      "reference": row["output"], "key_facts": row.get("key_facts") or [],
                      "A": runs[order[0]][row["id"]], "B": runs[order[1]][row["id"]]})
        key_items.append({"id": item_id, "row": row["id"], "A": order[0], "B": order[1]})
    sheet = {"id": sheet_id, "recipe": recipe.name, "key": rel(key_path), "items": items}
    key = {"sheet": sheet_id, "recipe": recipe.name, "systems": systems, "seed": seed, "n": len(items), "source": rel(source),
           "report_dir": rel(report_dir) if report_dir else None, "items": key_items}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(key_path, key)
    atomic_write_text(out, page(sheet))
    return out, key_path


def page(sheet: dict[str, Any]) -> str:
    """The review page: data inline, no external file, no network."""
    data = json.dumps(sheet, ensure_ascii=False).replace("</", "<\\/")
    title = html.escape(f"Blind review — {sheet['recipe']} ({len(sheet['items'])} questions)")
    return PAGE.replace("__TITLE__", title).replace("__DATA__", data)


PAGE = """<!DOCTYPE html>
<html lang="zh"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
.item{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:1em 0}
.q{font-weight:600;white-space:pre-wrap}.ans{display:grid;grid-template-columns:1fr 1fr;gap:1em;margin:.6em 0}
.ans>div{background:#f6f6f6;border-radius:4px;padding:.5em .7em}.text{white-space:pre-wrap;min-height:2em}
.done{border-color:#2a7}label{margin-right:.6em;white-space:nowrap}details{color:#555;margin:.3em 0}
#bar{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd}
</style></head><body>
<h1>__TITLE__</h1>
<p>Each question has two answers, A and B, from two systems in a random order (which is which is not on this page).
Score each answer 1 (wrong or useless) to 5 (correct, complete, well put), using the reference and key facts, and say
which you prefer. Your work is kept in this browser as you go; <b>Export</b> saves it as a JSON file to send back.</p>
<div id="bar">Rater: <input id="rater" placeholder="your name" size="16"> <button id="export">Export scores (JSON)</button>
<span id="status"></span></div>
<div id="items"></div>
<script id="sheet" type="application/json">__DATA__</script>
<script>
const sheet = JSON.parse(document.getElementById("sheet").textContent);
const store = "vslm-review-" + sheet.id;
const saved = JSON.parse(localStorage.getItem(store) || "{}");
const box = document.getElementById("items");
function el(tag, cls, text){const e=document.createElement(tag); if(cls) e.className=cls; if(text!==undefined) e.textContent=text; return e;}
function radios(parent, name, values, labels){
  values.forEach((v,i)=>{const l=el("label"); const r=el("input"); r.type="radio"; r.name=name; r.value=String(v);
    r.id=name+"-"+v; if(saved[name]===String(v)) r.checked=true; r.addEventListener("change", update);
    l.appendChild(r); l.appendChild(document.createTextNode(" "+labels[i])); parent.appendChild(l);});
}
function value(name){const r=document.querySelector('input[name="'+name+'"]:checked'); return r?r.value:null;}
sheet.items.forEach(item=>{
  const d=el("div","item"); d.id="item-"+item.id;
  d.appendChild(el("div","q",item.id+". "+item.question));
  const ref=el("details"); ref.appendChild(el("summary",null,"reference answer and key facts"));
  ref.appendChild(el("div","text",item.reference+(item.key_facts.length?"\\nKey facts: "+item.key_facts.join(", "):"")));
  d.appendChild(ref);
  const ans=el("div","ans");
  ["A","B"].forEach(side=>{const a=el("div"); a.appendChild(el("b",null,"Answer "+side));
    a.appendChild(el("div","text",item[side]||"(empty)")); const s=el("div"); s.appendChild(document.createTextNode("score: "));
    radios(s, side.toLowerCase()+"-"+item.id, [1,2,3,4,5], ["1","2","3","4","5"]); a.appendChild(s); ans.appendChild(a);});
  d.appendChild(ans);
  const p=el("div"); p.appendChild(document.createTextNode("prefer: "));
  radios(p, "pref-"+item.id, ["A","B","tie"], ["A","B","tie"]); d.appendChild(p);
  box.appendChild(d);
});
const rater=document.getElementById("rater"); rater.value=saved.rater||""; rater.addEventListener("input", update);
function collect(){return sheet.items.map(item=>({id:item.id, a:value("a-"+item.id)&&Number(value("a-"+item.id)),
  b:value("b-"+item.id)&&Number(value("b-"+item.id)), preference:value("pref-"+item.id)}));}
function update(){
  const state={rater:rater.value}; let done=0;
  sheet.items.forEach(item=>{["a-","b-","pref-"].forEach(k=>{const v=value(k+item.id); if(v) state[k+item.id]=v;});
    const full=value("a-"+item.id)&&value("b-"+item.id)&&value("pref-"+item.id);
    document.getElementById("item-"+item.id).classList.toggle("done", !!full); if(full) done++;});
  localStorage.setItem(store, JSON.stringify(state));
  document.getElementById("status").textContent=done+" of "+sheet.items.length+" done";
}
document.getElementById("export").addEventListener("click", ()=>{
  const name=rater.value.trim();
  if(!name){document.getElementById("status").textContent="enter your name first"; rater.focus(); return;}
  const out={sheet:sheet.id, key:sheet.key, rater:name, exported_at:new Date().toISOString(), items:collect()};
  const blob=new Blob([JSON.stringify(out,null,1)],{type:"application/json"});
  const a=document.createElement("a"); a.href=URL.createObjectURL(blob);
  a.download="scores-"+sheet.id+"-"+name.replace(/[^A-Za-z0-9_.-]+/g,"_")+".json";
  document.body.appendChild(a); a.click(); a.remove();
  document.getElementById("status").textContent="exported "+a.download;
});
update();
</script></body></html>
"""


def read_scores(path: Path) -> dict[str, Any]:
    """A rater's exported file, checked: one line naming the file and the key on any problem."""
    data = _read_json(path, "scores file")
    if not isinstance(data, dict) or not isinstance(data.get("sheet"), str) or not isinstance(data.get("items"), list):
        raise DataError(f"{path}: not a review export (needs `sheet` and `items`; export it from the review page)")
    if not isinstance(data.get("rater"), str) or not data["rater"].strip():
        raise DataError(f"{path}: `rater` missing or empty — export again with your name filled in")
    for i, item in enumerate(data["items"]):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise DataError(f"{path}: items[{i}] has no `id`")
        for side in ("a", "b"):
            if item.get(side) is not None and item[side] not in SCORES:
                raise DataError(f"{path}: items[{i}] ({item['id']}) `{side}` is {item[side]!r}, not a score 1-5 or null")
        if item.get("preference") is not None and item["preference"] not in PREFERENCES:
            raise DataError(f"{path}: items[{i}] ({item['id']}) `preference` is {item['preference']!r}, not A, B, tie or null")
    return data


def fleiss_kappa(table: list[list[int]]) -> float | None:
    """Fleiss' κ of items × category counts (every item rated by the same number of raters)."""
    if not table or len({sum(r) for r in table}) != 1 or sum(table[0]) < 2:
        return None
    n, total = sum(table[0]), len(table) * sum(table[0])
    p = [sum(r[j] for r in table) / total for j in range(len(table[0]))]
    agree = sum((sum(c * c for c in r) - n) / (n * (n - 1)) for r in table) / len(table)
    chance = sum(x * x for x in p)
    return None if chance == 1 else round((agree - chance) / (1 - chance), 4)


def weighted_kappa(a: list[int], b: list[int]) -> float | None:
    """Quadratic-weighted Cohen's κ of two raters' 1–5 scores on the same answers."""
    if len(a) < 2:
        return None
    n = len(a)
    observed = sum((x - y) ** 2 for x, y in zip(a, b)) / n
    expected = sum((x - y) ** 2 for x in a for y in b) / (n * n)
    return None if expected == 0 else round(1 - observed / expected, 4)


def summarise(key: dict[str, Any], raters: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean human score per system, preference rate, and agreement between raters."""
    systems = key["systems"]
    mapping = {item["id"]: item for item in key["items"]}
    scores: dict[str, list[int]] = {s: [] for s in systems}
    prefs = {**{s: 0 for s in systems}, "tie": 0}
    per_rater: dict[str, dict[str, dict[str, Any]]] = {}
    for name, data in raters.items():
        mine = per_rater.setdefault(name, {})
        for item in data["items"]:
            if item["id"] not in mapping:
                continue
            sides = mapping[item["id"]]
            got = {sides["A"]: item.get("a"), sides["B"]: item.get("b")}
            pref = item.get("preference")
            pref = sides[pref] if pref in ("A", "B") else pref
            for system, value in got.items():
                if value is not None:
                    scores[system].append(value)
            if pref is not None:
                prefs[pref] += 1
            mine[item["id"]] = {"scores": got, "preference": pref}
    judged = sum(prefs.values())
    out: dict[str, Any] = {
        "raters": sorted(raters), "items": len(key["items"]),
        "mean_score": {s: round(sum(v) / len(v), 3) if v else None for s, v in scores.items()},
        "scored": {s: len(v) for s, v in scores.items()},
        "preferences": prefs, "preference_rate": {k: round(v / judged, 4) if judged else None for k, v in prefs.items()},
    }
    if len(raters) >= 2:
        names = sorted(per_rater)
        common = [i for i in mapping if all(per_rater[r].get(i, {}).get("preference") for r in names)]
        categories = [*systems, "tie"]
        table = [[sum(per_rater[r][i]["preference"] == c for r in names) for c in categories] for i in common]
        pairs = []
        for r1, r2 in itertools.combinations(names, 2):
            both = [(per_rater[r1][i]["scores"][s], per_rater[r2][i]["scores"][s]) for i in mapping for s in systems
                    if per_rater[r1].get(i, {}).get("scores", {}).get(s) and per_rater[r2].get(i, {}).get("scores", {}).get(s)]
            same = [i for i in common if per_rater[r1][i]["preference"] == per_rater[r2][i]["preference"]]
            pairs.append({"raters": [r1, r2], "preference_agreement": round(len(same) / len(common), 4) if common else None,
                          "score_kappa": weighted_kappa([x for x, _ in both], [y for _, y in both]), "scored_pairs": len(both)})
        kappas = [p["score_kappa"] for p in pairs if p["score_kappa"] is not None]
        out["agreement"] = {"preference_fleiss_kappa": fleiss_kappa(table), "items_all_raters": len(common),
                            "score_weighted_kappa_mean": round(sum(kappas) / len(kappas), 4) if kappas else None, "pairs": pairs}
    return out


def human_review_lines(review: dict[str, Any]) -> list[str]:
    """The report's human review section."""
    s, systems = review["summary"], review["systems"]
    lines = ["## Human review (blind)", "",
             f"{len(s['raters'])} rater(s) ({', '.join(s['raters'])}) scored {s['items']} sampled questions (sheet `{review['sheet']}`, "
             "answers shown as A/B in a seeded random order, unblinded on import).", "",
             "| system | mean human score (1–5) | scores | preferred |", "| --- | --- | --- | --- |"]
    for system in systems:
        rate = s["preference_rate"][system]
        mean = s["mean_score"][system]
        lines.append(f"| {system} | {'–' if mean is None else f'{mean:.2f}'} | "
                     f"{s['scored'][system]} | {s['preferences'][system]} ({'–' if rate is None else f'{rate:.1%}'}) |")
    tie = s["preference_rate"]["tie"]
    lines += ["", f"Ties: {s['preferences']['tie']} ({'–' if tie is None else f'{tie:.1%}'})."]
    agreement = s.get("agreement")
    if agreement:
        lines.append(f"Inter-rater agreement: Fleiss' κ on preferences {agreement['preference_fleiss_kappa']} "
                     f"({agreement['items_all_raters']} items every rater judged); quadratic-weighted Cohen's κ on scores, "
                     f"mean over rater pairs, {agreement['score_weighted_kappa_mean']}; preference agreement per pair: "
                     + ", ".join(f"{'/'.join(p['raters'])} {p['preference_agreement']}" for p in agreement["pairs"]) + ".")
    return lines + [""]


def import_scores(files: list[Path], key_path: Path | None = None, replace: bool = False) -> tuple[Path, dict[str, Any]]:
    """Add raters' exported scores to the sheet's human_review.json and to its report; (file written, summary)."""
    exports = [(Path(f), read_scores(Path(f))) for f in files]
    sheets = {data["sheet"] for _, data in exports}
    if len(sheets) != 1:
        raise DataError(f"the scores files come from {len(sheets)} different sheets ({', '.join(sorted(sheets))}) — import one sheet at a time")
    first_file, first = exports[0]
    key_path = key_path or ROOT / first.get("key", "")
    if not first.get("key") and key_path == ROOT:
        raise DataError(f"{first_file}: no `key` (the sheet's key file) — pass --key saves/…/<sheet>.key.json")
    key = _read_json(key_path, "review key file (written beside the sheet by `vslm review`; pass --key)")
    if key.get("sheet") != first["sheet"]:
        raise DataError(f"{key_path}: key of sheet {key.get('sheet')}, but the scores are for {first['sheet']}")
    known = {item["id"] for item in key["items"]}
    for path, data in exports:
        stray = [i["id"] for i in data["items"] if i["id"] not in known]
        if stray:
            raise DataError(f"{path}: item {stray[0]} is not on sheet {key['sheet']}")
    target = (ROOT / key["report_dir"] if key.get("report_dir") else key_path.parent) / "human_review.json"
    review = _read_json(target, "human review") if target.is_file() else {"sheet": key["sheet"], "systems": key["systems"], "raters": {}}
    if review.get("sheet") != key["sheet"]:
        if not replace:
            raise DataError(f"{rel(target)} holds scores of sheet {review.get('sheet')} — pass --replace to start over with {key['sheet']}")
        review = {"sheet": key["sheet"], "systems": key["systems"], "raters": {}}
    names = [data["rater"].strip() for _, data in exports]
    if len(set(names)) != len(names):
        raise DataError(f"two of the files are by the same rater ({names}) — each rater exports once")
    for (path, data), name in zip(exports, names):
        if name in review["raters"] and not replace:
            raise DataError(f"{path}: rater `{name}` was imported already ({review['raters'][name]['file']}) — pass --replace to replace those scores")
        review["raters"][name] = {"file": rel(path), "exported_at": data.get("exported_at"), "items": data["items"]}
    review["summary"] = summarise(key, review["raters"])
    review["imported_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(target, review)
    add_to_report(target.parent, review)
    return target, review["summary"]


def add_to_report(report_dir: Path, review: dict[str, Any]) -> None:
    """Put the human review section into report.md (replacing an earlier one) and report.json, when they exist."""
    md, js = report_dir / "report.md", report_dir / "report.json"
    if md.is_file():
        text = md.read_text(encoding="utf-8")
        section = "\n".join(human_review_lines(review))
        start = text.find("## Human review (blind)")
        if start >= 0:
            end = text.find("\n## ", start + 1)
            text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
        else:
            at = text.find("## By category")
            text = text[:at] + section + "\n" + text[at:] if at >= 0 else text.rstrip("\n") + "\n\n" + section + "\n"
        atomic_write_text(md, text)
    if js.is_file():
        data = json.loads(js.read_text(encoding="utf-8"))
        data["human_review"] = review
        atomic_write_json(js, data)

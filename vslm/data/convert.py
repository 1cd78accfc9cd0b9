"""Convert distilled JSONL, CSV, Alpaca, ShareGPT and OpenAI-messages data into a registered dataset.

The output is alpaca JSONL (instruction, input, output, optional history), or sharegpt JSONL (`conversations` with
from/value) when a row has function_call/observation turns that alpaca cannot carry, under datasets/<name>/,
registered in dataset_info.json. Every field LlamaFactory's formattings carry is kept and registered — system, tools
(as a JSON string), images/videos/audios, the KTO `label`, ranking `chosen`/`rejected` — as are the source's other
fields; a value LlamaFactory could not read, a per-message field no formatting carries, or a file mixing ranking/KTO
and plain rows is refused naming the field. The rows written are checked by the registry's (LlamaFactory's) rules. Text is kept verbatim (only the ends of each cell are
trimmed); `--clean` drops HTML markup from cells that contain HTML. All rows are validated first and every problem
is reported as file:line; nothing is written unless the whole conversion succeeds, and no existing data file or
registry entry is replaced without --replace.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import DataError
from ..core.jsonio import dumps_jsonl, json_records, read_jsonl, read_text
from ..core.paths import DATASET_INFO, ROOT
from .registry import RowProblem, align, alpaca_entry, check_aligned, check_clash, check_name, lf_attr, publish, sharegpt_entry

FORMATS = ("distilled", "csv", "alpaca", "sharegpt", "openai")
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                "system": "system", "function_call": "function_call", "observation": "observation", "tool": "observation"}
HTML_TAGS = r"(?:p|br|div|span|li|ul|ol|table|thead|tbody|tr|td|th|b|i|u|em|strong|a|img|h[1-6]|pre|code|font|hr|blockquote|sup|sub|small|center)"
HTML_ATTR = r"""\s+[A-Za-z_:][-\w:.]*\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+)"""  # name=value: `<b and c>` is no tag
HTML_TAG = re.compile(rf"<!--.*?-->|</{HTML_TAGS}\s*>|<{HTML_TAGS}(?:{HTML_ATTR})*\s*/?>", re.I | re.S)
HTML_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|li|tr|h[1-6]|pre|blockquote|table)\s*>", re.I)


@dataclass
class Report:
    read: int = 0
    kept: int = 0
    duplicates: int = 0
    repeated: int = 0
    cleaned: int = 0
    errors: list[str] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)


def looks_like_html(text: str) -> bool:
    return bool(HTML_TAG.search(text))


def clean_html(text: str) -> str:
    """Markup out of a cell that contains HTML tags (<p>, <br>, </div> ...): line breaks kept, entities decoded.
    Anything else between < and > (List<String>, a<b and c>d) is text and stays."""
    if not looks_like_html(text):
        return text
    text = HTML_BREAK.sub("\n", text)
    text = html.unescape(HTML_TAG.sub("", text))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _clean_row(row: dict[str, Any]) -> int:
    """Clean a converted row's text cells in place; the number of cells changed. A cell that only held markup
    marks the row `_emptied`."""
    changed = 0
    for holder, key in _text_cells(row):
        cleaned = clean_html(holder[key])
        changed += cleaned != holder[key]
        if holder[key] and not cleaned:
            row["_emptied"] = True
        holder[key] = cleaned
    return changed


def _text_cells(row: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(container, key) of every text a converted row trains on: prompt, answers, history, turns, chosen/rejected."""
    cells: list[tuple[Any, Any]] = [(row, k) for k in ("instruction", "input", "output", "system", "chosen", "rejected")
                                    if isinstance(row.get(k), str)]
    cells += [(turn, i) for turn in row.get("history") or [] for i in range(len(turn))]
    cells += [(m, "value") for m in row.get("conversations") or []]
    cells += [(row[k], "value") for k in ("chosen", "rejected") if isinstance(row.get(k), dict)]
    return cells


def _extras(rec: dict[str, Any], used: tuple[str, ...]) -> dict[str, Any]:
    """The source's other fields (category, fact, id ...), kept as they are."""
    return {k: v for k, v in rec.items() if k and k not in used and not k.startswith("_") and v is not None}


# Fields LlamaFactory's formattings carry besides the conversation (parser.py DatasetAttr columns)
CARRIED = ("system", "tools", "images", "videos", "audios", "label", "kto_tag", "chosen", "rejected")


def _carried(rec: dict[str, Any], where: str, *, sharegpt_answers: bool) -> dict[str, Any]:
    """The LlamaFactory fields of a source record, normalised: tools as a JSON string, the KTO label as `label`
    (true/false), chosen/rejected as answers; a value LlamaFactory could not read is a DataError naming the field."""
    out: dict[str, Any] = {}
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        out["system"] = rec["system"].strip()
    elif rec.get("system") not in (None, ""):
        raise DataError(f"{where}: `system` must be a string")
    tools = rec.get("tools")
    if isinstance(tools, (list, dict)):
        tools = json.dumps(tools, ensure_ascii=False)  # LlamaFactory's formatter json.loads a string
    if isinstance(tools, str) and tools.strip():
        try:
            json.loads(tools)
        except json.JSONDecodeError:
            raise DataError(f"{where}: `tools` is not JSON; LlamaFactory's ToolFormatter would fail on it") from None
        out["tools"] = tools
    elif tools not in (None, ""):
        raise DataError(f"{where}: `tools` must be a JSON string or list")
    for key in ("images", "videos", "audios"):
        media = rec.get(key)
        if media in (None, [], ""):
            continue
        if isinstance(media, str):
            media = [media]
        if not (isinstance(media, list) and all(isinstance(m, (str, list)) for m in media)):
            raise DataError(f"{where}: `{key}` must be a path or a list of paths (relative to LlamaFactory's media_dir)")
        out[key] = media
    labels = [k for k in ("label", "kto_tag") if k in rec]
    if labels:
        if not isinstance(rec[labels[0]], bool):
            raise DataError(f"{where}: `{labels[0]}` must be true or false (the KTO label); LlamaFactory reads any other "
                            "value as a plain SFT row")
        out["label"] = rec[labels[0]]
    if "chosen" in rec or "rejected" in rec:
        for key in ("chosen", "rejected"):
            value = rec.get(key)
            if isinstance(value, dict) and sharegpt_answers:
                role_key, content_key = ("from", "value") if "from" in value else ("role", "content")
                role = ROLE_ALIASES.get(str(value.get(role_key, "")).lower())
                if role not in ("assistant", "function_call") or not isinstance(value.get(content_key), str) or not value[content_key].strip():
                    raise DataError(f"{where}: `{key}` must be a non-empty assistant or function_call message")
                out[key] = (role, value[content_key].strip())
            elif isinstance(value, str) and value.strip():
                out[key] = ("assistant", value.strip())
            else:
                raise DataError(f"{where}: `{key}` missing or empty (ranking rows need both chosen and rejected)")
    return out


def _from_alpaca(rec: dict[str, Any], where: str, keys=("instruction", "input", "output")) -> dict[str, Any]:
    prompt_key, query_key, answer_key = keys
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object")
    carried = _carried(rec, where, sharegpt_answers=False)
    prompt, answer = rec.get(prompt_key), rec.get(answer_key)
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: `{prompt_key}` missing or empty")
    ranking = "chosen" in carried
    if not ranking and (not isinstance(answer, str) or not answer.strip()):
        raise DataError(f"{where}: `{answer_key}` (the answer) missing or empty")
    query = rec.get(query_key) or ""
    if not isinstance(query, str):
        raise DataError(f"{where}: `{query_key}` must be a string")
    row: dict[str, Any] = {"instruction": prompt.strip(), "input": query.strip()}
    if not ranking:
        row["output"] = answer.strip()
    elif answer not in (None, ""):
        raise DataError(f"{where}: a ranking row has `chosen`/`rejected`, so `{answer_key}` would be lost; remove it")
    history = rec.get("history")
    if history:
        if not (isinstance(history, list) and all(isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) and x.strip() for x in t) for t in history)):
            raise DataError(f"{where}: `history` must be a list of non-empty [user, assistant] pairs")
        row["history"] = history
    return {**row, **_fields(carried), **_extras(rec, (*keys, "instruction", "input", "output", "history", *CARRIED))}


def _fields(carried: dict[str, Any]) -> dict[str, Any]:
    """Carried fields as an alpaca row holds them (chosen/rejected as their text)."""
    return {k: v[1] if k in ("chosen", "rejected") else v for k, v in carried.items()}


MESSAGE_KEYS = {"from", "value", "role", "content", "tool_calls", "tool_call_id", "name"}
SHAREGPT_TAGS = {"user": "human", "assistant": "gpt", "function_call": "function_call", "observation": "observation"}


def _turns(msgs: Any, where: str, role_key: str, content_key: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(system, [(role, text)]) with roles user/assistant/function_call/observation, in LlamaFactory's order: an
    optional first system message, then user|observation and assistant|function_call alternating. OpenAI
    `tool_calls` become a function_call turn and consecutive tool answers one observation, as LlamaFactory's openai
    converter does."""
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: expected a non-empty list of messages")
    system, turns, pending = None, [], []
    for i, msg in enumerate(msgs, 1):
        if not isinstance(msg, dict):
            raise DataError(f"{where}: message {i} is not an object")
        lost = sorted(set(msg) - MESSAGE_KEYS)
        if lost:
            raise DataError(f"{where}: message {i} has field `{lost[0]}`, which LlamaFactory's formattings cannot carry; "
                            "remove it (nothing was written)")
        role = ROLE_ALIASES.get(str(msg.get(role_key, "")).lower())
        content = msg.get(content_key)
        if msg.get("tool_calls"):
            if role != "assistant" or (isinstance(content, str) and content.strip()):
                raise DataError(f"{where}: message {i} has `tool_calls` and text; LlamaFactory keeps only the tool calls — "
                                "move the text into its own assistant turn")
            try:
                content = json.dumps([call["function"] for call in msg["tool_calls"]], ensure_ascii=False)
            except (TypeError, KeyError):
                raise DataError(f"{where}: message {i}: every `tool_calls` item needs a `function`") from None
            role = "function_call"
        if role is None:
            raise DataError(f"{where}: message {i} has unknown role {msg.get(role_key)!r} (use user/assistant/system/"
                            "function_call/observation/tool or human/gpt)")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{where}: message {i} ({role}) has empty content")
        if role == "system":
            if i != 1:
                raise DataError(f"{where}: message {i}: a system message may only come first (LlamaFactory's rule)")
            system = content.strip()
            continue
        if role == "observation" and role_key == "role":  # OpenAI tool answers in a row are one observation
            pending.append(content.strip())
            continue
        if pending:
            turns.append(("observation", "\n</tool_response>\n<tool_response>\n".join(pending)))
            pending = []
        turns.append((role, content.strip()))
    if pending:
        turns.append(("observation", "\n</tool_response>\n<tool_response>\n".join(pending)))
    for i, (role, _) in enumerate(turns):
        want = ("user", "observation") if i % 2 == 0 else ("assistant", "function_call")
        if role not in want:
            raise DataError(f"{where}: message {i + 1 + (system is not None)} is {role!r} but {' or '.join(map(repr, want))} "
                            f"was expected (turns must alternate user, assistant)")
    return system, turns


def _from_messages(rec: dict[str, Any], msgs: Any, where: str, role_key: str, content_key: str, used: tuple[str, ...]) -> dict[str, Any]:
    """A conversation as an alpaca row when it is plain user/assistant turns, else as a sharegpt row
    (`conversations` with function_call/observation turns); every carried field kept."""
    system, turns = _turns(msgs, where, role_key, content_key)
    carried = _carried(rec, where, sharegpt_answers=True)
    if system and carried.get("system") and carried["system"] != system:
        raise DataError(f"{where}: both a system message and a different `system` field; keep one")
    if system:
        carried["system"] = system
    ranking = "chosen" in carried
    if ranking and len(turns) % 2 == 0:
        raise DataError(f"{where}: a ranking row's conversation must end on a user turn (the answers are chosen/rejected)")
    if not ranking and (len(turns) < 2 or len(turns) % 2):
        raise DataError(f"{where}: conversation must end with an assistant answer")
    extras = _extras(rec, (*used, *CARRIED))
    plain = all(role in ("user", "assistant") for role, _ in turns) and all(
        carried[k][0] == "assistant" for k in ("chosen", "rejected") if k in carried)
    if not plain:
        convo = [{"from": SHAREGPT_TAGS[role], "value": text} for role, text in turns]
        answers = {k: {"from": SHAREGPT_TAGS[v[0]], "value": v[1]} for k, v in carried.items() if k in ("chosen", "rejected")}
        return {"conversations": convo, **carried, **answers, **extras}
    texts = [text for _, text in turns]
    last = len(texts) - 1 if ranking else len(texts) - 2
    row: dict[str, Any] = {"instruction": texts[last], "input": ""}
    if not ranking:
        row["output"] = texts[-1]
    if last:
        row["history"] = [texts[i:i + 2] for i in range(0, last, 2)]
    return {**row, **_fields(carried), **extras}


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) per CSV record; a record with more fields than the header is a DataError."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    try:
        missing = {"instruction", "output"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}:1: CSV header lacks {', '.join(sorted(missing))} (need instruction,input,output)")
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            yield where, DataError(f"{where}: more fields than the header has (unquoted comma?)") if None in rec else rec
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: unreadable CSV ({exc})") from None


def _row(rec: Any, fmt: str, where: str) -> dict[str, Any]:
    if fmt in ("alpaca", "csv"):
        return _from_alpaca(rec, where)
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object" + ("" if fmt == "distilled" else " with `messages`" if fmt == "openai"
                                                               else " with `conversations` or `messages`"))
    if fmt == "distilled":
        keys = ("question", "context", "answer") if "question" in rec else ("instruction", "input", "output")
        return _from_alpaca(rec, where, keys)
    if fmt == "openai":
        return _from_messages(rec, rec.get("messages"), where, "role", "content", ("messages",))
    # sharegpt: human/gpt with from/value, or user/assistant with role/content
    msgs = rec.get("conversations", rec.get("messages"))
    first = msgs[0] if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) else {}
    return _from_messages(rec, msgs, where, *(("from", "value") if "from" in first else ("role", "content")),
                          ("conversations", "messages"))


def read_rows(path: Path, fmt: str) -> tuple[list[dict[str, Any]], list[str], int]:
    """All valid rows, all errors (file:line), and the number of records read."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    records = _csv_rows(path) if fmt == "csv" else ((f"{path}:{line}", rec) for line, rec in json_records(path))
    rows, errors, read = [], [], 0
    for where, rec in records:
        read += 1
        try:
            if isinstance(rec, DataError):
                raise rec
            row = _row(rec, fmt, where)
            try:
                json.dumps(row, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(f"{where}: contains an invalid character (a lone surrogate such as \\ud800); fix the text") from None
            rows.append({**row, "_where": where})  # `_` keys are never written
        except DataError as exc:
            errors.append(str(exc))
    return rows, errors, read


TRAINED = ("system", "history", "instruction", "input", "output", "conversations", "chosen", "rejected", "label", "tools",
           "images", "videos", "audios")


def _key(row: dict[str, Any]) -> str:
    """What LlamaFactory trains on: two rows equal here are duplicates (their other fields may differ)."""
    return json.dumps([row.get(k) for k in TRAINED], ensure_ascii=False)


def _one_kind(rows: list[dict[str, Any]], source: Path) -> None:
    """LlamaFactory reads a dataset as ranking pairs, KTO rows or plain rows, never a mix: refuse a source that
    mixes them, naming the field."""
    for key, stage in (("chosen", "ranking pairs (stage rm/dpo)"), ("label", "KTO rows with a true/false label")):
        having = [r for r in rows if key in r]
        if having and len(having) != len(rows):
            lacking = next(r for r in rows if key not in r)
            raise DataError(f"{lacking['_where']}: no `{key}`, but {len(having)} of {len(rows)} rows have one; LlamaFactory "
                            f"reads a dataset either as {stage} or not — split the file; nothing was written")


def _entry(file_rel: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return (sharegpt_entry if any("conversations" in r for r in rows) else alpaca_entry)(file_rel, rows)


def _as_sharegpt(row: dict[str, Any]) -> dict[str, Any]:
    """An alpaca row written as sharegpt, for a file whose other rows need function_call/observation turns."""
    if "conversations" in row:
        return row
    texts = [t for pair in row.get("history") or [] for t in pair]
    texts.append(row["instruction"] + ("\n" + row["input"] if row["input"] else ""))
    out = {k: v for k, v in row.items() if k not in ("instruction", "input", "output", "history")}
    if "output" in row:
        texts.append(row["output"])
    out["conversations"] = [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)]
    for key in ("chosen", "rejected"):
        if key in row:
            out[key] = {"from": "gpt", "value": row[key]}
    return {"conversations": out.pop("conversations"), **out}


def _llamafactory_problems(rows: list[dict[str, Any]], entry: dict[str, Any]) -> list[str]:
    """Rows the written entry would not train on, by the registry's (LlamaFactory's) rules, as file:line lines."""
    attr = lf_attr(entry)
    problems = []
    for row in rows:
        try:
            example = align(row, attr)
            example["kto_value"] = row.get("label")
            check_aligned(example, attr)
        except RowProblem as exc:
            problems.append(f"{row['_where']}: {exc}")
    return problems


def _rel(path: Path, registry_path: Path) -> str:
    """A data file's file_name in the registry: relative to the registry's folder when inside it."""
    path, base = path.resolve(), registry_path.parent.resolve()
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _out_dir(name: str, out_dir: Path | None) -> Path:
    out_dir = out_dir or ROOT / "datasets" / name
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir} is a file; give a folder (default datasets/{name}/)")
    return out_dir


def _split(unique: list[dict[str, Any]], val_ratio: float, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, val); refuses a ratio that would leave either side empty."""
    if not val_ratio:
        return unique, []
    n = len(unique)
    n_val = int(round(n * val_ratio))
    if n_val == 0 or n_val == n:
        if n < 2:
            raise DataError(f"--val-ratio {val_ratio}: only {n} row, so a validation split would leave no training rows; drop --val-ratio")
        low, high = math.ceil(100 / n) / 100, math.floor(100 * (n - 1) / n) / 100
        side = "validation" if n_val == 0 else "training"
        raise DataError(f"--val-ratio {val_ratio} on {n} rows leaves 0 {side} rows; use a ratio from {low:g} to {high:g}, or drop --val-ratio")
    unique = list(unique)
    random.Random(seed).shuffle(unique)
    return unique[n_val:], unique[:n_val]


def precheck(name: str, out_dir: Path | None = None, *, replace: bool = False, registry_path: Path | None = None,
             rerun_teacher: str | None = None) -> None:
    """Before paid work (distill): refuse at once what `convert` would refuse for lack of --replace. An existing
    `<name>_train.jsonl` whose rows all come from `rerun_teacher` is an earlier run of the same distillation:
    it may go on (the final write still compares content)."""
    check_name(name)
    registry_path = registry_path or DATASET_INFO
    path = _out_dir(name, out_dir) / f"{name}_train.jsonl"
    content = None
    if rerun_teacher and path.is_file():
        try:
            rows = read_jsonl(path)
        except DataError:
            rows = []
        if rows and all(r.get("teacher") == rerun_teacher for r in rows):
            content = path.read_bytes()
    check_clash({f"{name}_train": alpaca_entry(_rel(path, registry_path), [])}, {path: content}, replace=replace,
                registry_path=registry_path)


def convert(source: Path, fmt: str, name: str, out_dir: Path | None = None, *, val_ratio: float = 0.0, seed: int = 42,
            repeat: list[str] | None = None, times: int = 3, replace: bool = False, skip_invalid: bool = False,
            clean: bool = False, registry_path: Path | None = None) -> Report:
    """Validate, deduplicate, split, repeat key samples, write atomically and register `<name>_train` (+ `<name>_val`)."""
    check_name(name)
    registry_path = registry_path or DATASET_INFO
    out_dir = _out_dir(name, out_dir)
    if not 0 <= val_ratio < 1:
        raise DataError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    if times < 1:
        raise DataError(f"--times must be at least 1 (the total copies of each key sample), got {times}")
    report = Report()
    rows, report.errors, report.read = read_rows(source, fmt)
    if report.errors and not skip_invalid:
        shown = "\n  ".join(report.errors[:20])
        more = f"\n  ... and {len(report.errors) - 20} more" if len(report.errors) > 20 else ""
        raise DataError(f"{len(report.errors)} invalid row(s) in {source}; nothing was written (fix them or pass --skip-invalid):\n  {shown}{more}")
    if clean:
        report.cleaned = sum(_clean_row(row) for row in rows)
        emptied = [row["_where"] for row in rows if row.get("_emptied")]
        if emptied:
            raise DataError(f"{emptied[0]}: a cell (instruction, input, output, a turn) is empty once --clean drops its HTML "
                            f"({len(emptied)} such row(s)); fix them or convert without --clean")
    _one_kind(rows, source)
    if any("conversations" in r for r in rows):  # alpaca cannot carry function_call/observation turns
        rows = [_as_sharegpt(r) for r in rows]
    seen, unique = set(), []
    for row in rows:
        key = _key(row)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        unique.append(row)
    if not unique:
        raise DataError(f"{source}: no valid rows to write")
    train, val = _split(unique, val_ratio, seed)
    if repeat:
        extra = []
        for row in train:
            if any(k in str(holder[key]) for holder, key in _text_cells(row) for k in repeat):
                extra += [dict(row) for _ in range(times - 1)]
        report.repeated = len(extra)
        train = train + extra
    entry = _entry("", unique)
    problems = _llamafactory_problems(unique, entry)
    if problems:
        raise DataError(f"{problems[0]}; nothing was written" + (f" ({len(problems)} such rows)" if len(problems) > 1 else ""))
    parts = {f"{name}_train": (out_dir / f"{name}_train.jsonl", train)}
    if val:
        parts[f"{name}_val"] = (out_dir / f"{name}_val.jsonl", val)
    publish({ds: (path, dumps_jsonl(part), _entry(_rel(path, registry_path), unique)) for ds, (path, part) in parts.items()},
            replace=replace, registry_path=registry_path)
    report.kept = len(unique)
    report.files = {str(p): len(part) for p, part in parts.values()}
    return report

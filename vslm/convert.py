"""Convert distilled JSONL, CSV, Alpaca, ShareGPT and OpenAI-messages data into a registered dataset.

Every output is alpaca JSONL (instruction, input, output, optional history/system, plus the source's other fields)
under datasets/<name>/, registered in dataset_info.json. Text is kept verbatim (only the ends of each cell are
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

from .jsonio import DataError, dumps_jsonl, json_records, read_jsonl, read_text
from .paths import DATASET_INFO, ROOT
from .registry import alpaca_entry, check_clash, check_name, publish

FORMATS = ("distilled", "csv", "alpaca", "sharegpt", "openai")
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                "system": "system"}
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
    """Clean a converted row's text cells in place; the number of cells changed."""
    changed = 0
    for key in ("instruction", "input", "output", "system"):
        if isinstance(row.get(key), str):
            cleaned = clean_html(row[key])
            changed += cleaned != row[key]
            row[key] = cleaned
    for turn in row.get("history") or []:
        for i, text in enumerate(turn):
            turn[i] = clean_html(text)
            changed += turn[i] != text
    return changed


def _extras(rec: dict[str, Any], used: tuple[str, ...]) -> dict[str, Any]:
    """The source's other fields (category, fact, id ...), kept as they are."""
    return {k: v for k, v in rec.items() if k and k not in used and not k.startswith("_") and v is not None}


def _from_alpaca(rec: dict[str, Any], where: str, keys=("instruction", "input", "output")) -> dict[str, Any]:
    prompt_key, query_key, answer_key = keys
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object")
    prompt, answer = rec.get(prompt_key), rec.get(answer_key)
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: `{prompt_key}` missing or empty")
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(f"{where}: `{answer_key}` (the answer) missing or empty")
    query = rec.get(query_key) or ""
    if not isinstance(query, str):
        raise DataError(f"{where}: `{query_key}` must be a string")
    row = {"instruction": prompt.strip(), "input": query.strip(), "output": answer.strip()}
    history = rec.get("history")
    if history:
        if not (isinstance(history, list) and all(isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) and x.strip() for x in t) for t in history)):
            raise DataError(f"{where}: `history` must be a list of non-empty [user, assistant] pairs")
        row["history"] = history
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        row["system"] = rec["system"].strip()
    return {**row, **_extras(rec, (*keys, "instruction", "input", "output", "history", "system"))}


def _from_messages(msgs: Any, where: str, role_key: str, content_key: str) -> dict[str, Any]:
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: expected a non-empty list of messages")
    system = None
    turns = []
    for i, msg in enumerate(msgs, 1):
        if not isinstance(msg, dict):
            raise DataError(f"{where}: message {i} is not an object")
        role = ROLE_ALIASES.get(str(msg.get(role_key, "")).lower())
        content = msg.get(content_key)
        if role is None:
            raise DataError(f"{where}: message {i} has unknown role {msg.get(role_key)!r} (use user/assistant/system or human/gpt)")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{where}: message {i} ({role}) has empty content")
        if role == "system":
            if i != 1:
                raise DataError(f"{where}: message {i}: a system message may only come first")
            system = content.strip()
            continue
        want = "user" if len(turns) % 2 == 0 else "assistant"
        if role != want:
            raise DataError(f"{where}: message {i} is {role!r} but {want!r} was expected (turns must alternate user, assistant)")
        turns.append(content.strip())
    if len(turns) < 2 or len(turns) % 2:
        raise DataError(f"{where}: conversation must end with an assistant answer")
    pairs = [turns[i:i + 2] for i in range(0, len(turns), 2)]
    row: dict[str, Any] = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    if len(pairs) > 1:
        row["history"] = pairs[:-1]
    if system:
        row["system"] = system
    return row


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
        return {**_from_messages(rec.get("messages"), where, "role", "content"), **_extras(rec, ("messages",))}
    # sharegpt: human/gpt with from/value, or user/assistant with role/content
    msgs = rec.get("conversations", rec.get("messages"))
    first = msgs[0] if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) else {}
    row = _from_messages(msgs, where, *(("from", "value") if "from" in first else ("role", "content")))
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        row["system"] = rec["system"].strip()
    return {**row, **_extras(rec, ("conversations", "messages", "system"))}


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


def _key(row: dict[str, Any]) -> str:
    return json.dumps([row.get("system"), row.get("history"), row["instruction"], row["input"], row["output"]], ensure_ascii=False)


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
        emptied = [row["_where"] for row in rows if not row["instruction"] or not row["output"]]
        if emptied:
            raise DataError(f"{emptied[0]}: the instruction or output is empty once --clean drops its HTML "
                            f"({len(emptied)} such row(s)); fix them or convert without --clean")
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
            if any(k in row["output"] or k in row["instruction"] or k in row["input"] for k in repeat):
                extra += [dict(row) for _ in range(times - 1)]
        report.repeated = len(extra)
        train = train + extra
    parts = {f"{name}_train": (out_dir / f"{name}_train.jsonl", train)}
    if val:
        parts[f"{name}_val"] = (out_dir / f"{name}_val.jsonl", val)
    publish({ds: (path, dumps_jsonl(part), alpaca_entry(_rel(path, registry_path), part)) for ds, (path, part) in parts.items()},
            replace=replace, registry_path=registry_path)
    report.kept = len(unique)
    report.files = {str(p): len(part) for p, part in parts.values()}
    return report

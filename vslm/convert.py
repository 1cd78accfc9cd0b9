"""Convert distilled JSONL, CSV, Alpaca, ShareGPT and OpenAI-messages data into a registered dataset.

Every output is alpaca JSONL (instruction, input, output, optional history/system) under
datasets/<domain>/, registered in dataset_info.json. All rows are validated first and every problem
is reported as file:line; nothing is written unless the whole conversion succeeds.
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .jsonio import DataError, atomic_write_json, atomic_write_jsonl
from .paths import ROOT
from .registry import alpaca_entry, load_registry

FORMATS = ("distilled", "csv", "alpaca", "sharegpt", "openai")
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                "system": "system"}


@dataclass
class Report:
    read: int = 0
    kept: int = 0
    duplicates: int = 0
    repeated: int = 0
    errors: list[str] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)


def clean_text(text: Any) -> str:
    """The CSV blog's cleaning: collapse whitespace, drop HTML tags."""
    if not isinstance(text, str):
        return ""
    text = re.sub(r"<[^<>]*>", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, record) pairs from .jsonl or a .json list; bad JSON raises DataError with its line."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
        for i, item in enumerate(data):
            yield i + 1, item
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})")


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
    return row


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


def read_rows(path: Path, fmt: str) -> tuple[list[dict[str, Any]], list[str], int]:
    """All valid rows, all errors (file:line), and the number of records read."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows, errors, read = [], [], 0
    if fmt == "csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"instruction", "output"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}:1: CSV header lacks {', '.join(sorted(missing))} (need instruction,input,output)")
            for rec in reader:
                read += 1
                where = f"{path}:{reader.line_num}"
                if None in rec:
                    errors.append(f"{where}: more fields than the header has (unquoted comma?)")
                    continue
                try:
                    rows.append(_from_alpaca({k: clean_text(v) for k, v in rec.items()}, where))
                except DataError as exc:
                    errors.append(str(exc))
        return rows, errors, read
    for lineno, rec in _records(path):
        read += 1
        where = f"{path}:{lineno}"
        try:
            if isinstance(rec, DataError):
                raise rec
            if fmt == "alpaca":
                rows.append(_from_alpaca(rec, where))
            elif fmt == "distilled":
                keys = ("question", "context", "answer") if "question" in rec else ("instruction", "input", "output")
                row = _from_alpaca(rec, where, keys)
                row.update({k: rec[k] for k in ("source", "chunk_id", "teacher") if k in rec})
                rows.append(row)
            elif fmt == "openai":
                if not isinstance(rec, dict):
                    raise DataError(f"{where}: expected a JSON object with `messages`")
                rows.append(_from_messages(rec.get("messages"), where, "role", "content"))
            else:  # sharegpt: human/gpt with from/value, or user/assistant with role/content
                if not isinstance(rec, dict):
                    raise DataError(f"{where}: expected a JSON object with `conversations` or `messages`")
                msgs = rec.get("conversations", rec.get("messages"))
                first = msgs[0] if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) else {}
                keys = ("from", "value") if "from" in first else ("role", "content")
                row = _from_messages(msgs, where, *keys)
                if isinstance(rec.get("system"), str) and rec["system"].strip():
                    row["system"] = rec["system"].strip()
                rows.append(row)
        except DataError as exc:
            errors.append(str(exc))
    return rows, errors, read


def _key(row: dict[str, Any]) -> str:
    return json.dumps([row.get("system"), row.get("history"), row["instruction"], row["input"], row["output"]], ensure_ascii=False)


def convert(source: Path, fmt: str, name: str, out_dir: Path | None = None, *, val_ratio: float = 0.0, seed: int = 42,
            repeat: list[str] | None = None, times: int = 3, replace: bool = False, skip_invalid: bool = False,
            registry_path: Path | None = None) -> Report:
    """Validate, deduplicate, split, repeat key samples, write atomically and register `<name>_train` (+ `<name>_val`)."""
    registry_path = registry_path or ROOT / "dataset_info.json"
    out_dir = out_dir or ROOT / "datasets" / name
    report = Report()
    rows, report.errors, report.read = read_rows(source, fmt)
    if report.errors and not skip_invalid:
        shown = "\n  ".join(report.errors[:20])
        more = f"\n  ... and {len(report.errors) - 20} more" if len(report.errors) > 20 else ""
        raise DataError(f"{len(report.errors)} invalid row(s) in {source}; nothing was written (fix them or pass --skip-invalid):\n  {shown}{more}")
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
    if not 0 <= val_ratio < 1:
        raise DataError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    random.Random(seed).shuffle(unique) if val_ratio else None
    n_val = int(round(len(unique) * val_ratio))
    val, train = unique[:n_val], unique[n_val:]
    if repeat:
        extra = []
        for row in train:
            if any(k in row["output"] or k in row["instruction"] or k in row["input"] for k in repeat):
                extra += [dict(row) for _ in range(times - 1)]
        report.repeated = len(extra)
        train = train + extra
    outputs = {f"{name}_train": (out_dir / f"{name}_train.jsonl", train)}
    if val:
        outputs[f"{name}_val"] = (out_dir / f"{name}_val.jsonl", val)
    registry = load_registry(registry_path)
    base = registry_path.parent.resolve()

    def rel(path: Path) -> str:
        path = path.resolve()
        return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)

    entries = {ds_name: alpaca_entry(rel(path), part) for ds_name, (path, part) in outputs.items()}
    for ds_name, entry in entries.items():
        if ds_name in registry and registry[ds_name] != entry and not replace:
            raise DataError(f"{registry_path}: dataset `{ds_name}` is already registered with other settings; nothing was written "
                            f"(pass --replace to overwrite it, or choose another --name)")
    previous = {path: path.read_bytes() if path.exists() else None for path, _ in outputs.values()}
    try:
        for path, part in outputs.values():
            atomic_write_jsonl(path, part)
        atomic_write_json(registry_path, {**registry, **entries})  # one write: all entries or none
    except BaseException:
        for path, old in previous.items():  # put the data files back as they were
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(old)
        raise
    report.kept = len(unique)
    report.files = {str(p): len(part) for p, part in outputs.values()}
    return report

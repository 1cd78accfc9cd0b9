"""dataset_info.json at the repository root: the registry LlamaFactory and LlamaBoard read.

Writes merge one entry at a time and replace the file atomically; other entries are never touched.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .jsonio import DataError, atomic_write_json, read_jsonl
from .paths import DATASET_INFO, ROOT


def load_registry(path: Path = DATASET_INFO) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); fix it by hand, nothing was written") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of dataset entries")
    return data


def register(name: str, entry: dict[str, Any], *, replace: bool = False, path: Path = DATASET_INFO) -> None:
    registry = load_registry(path)
    if name in registry and registry[name] != entry and not replace:
        raise DataError(f"{path}: dataset `{name}` is already registered with other settings; pass --replace to overwrite it or pick another --name")
    registry[name] = entry
    atomic_write_json(path, registry)


def alpaca_entry(file_rel: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    if any(r.get("history") for r in rows):
        columns["history"] = "history"
    if any(r.get("system") for r in rows):
        columns["system"] = "system"
    return {"file_name": file_rel, "formatting": "alpaca", "columns": columns}


def text_entry(file_rel: str) -> dict[str, Any]:
    return {"file_name": file_rel, "columns": {"prompt": "text"}}


def _load_rows(file: Path) -> list[dict[str, Any]]:
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(file)
    if suffix == ".json":
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
        if not isinstance(data, list):
            raise DataError(f"{file}: expected a JSON list of rows")
        return [dict(r, _line=i + 1) for i, r in enumerate(data)]
    if suffix == ".csv":
        with file.open(encoding="utf-8-sig", newline="") as handle:
            return [dict(r, _line=i + 2) for i, r in enumerate(csv.DictReader(handle))]
    if suffix == ".txt":
        return [{"text": line, "_line": i + 1} for i, line in enumerate(file.read_text(encoding="utf-8").splitlines())]
    raise DataError(f"{file}: unsupported extension {suffix} (use .jsonl, .json, .csv or .txt)")


def _check_row(name: str, file: Path, entry: dict[str, Any], row: dict[str, Any]) -> str | None:
    where = f"{file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}:{row.get('_line', '?')}"
    cols = entry.get("columns", {})
    formatting = entry.get("formatting", "alpaca")
    if formatting == "alpaca":
        prompt, response = cols.get("prompt", "instruction"), cols.get("response", "output")
        if not isinstance(row.get(prompt), str) or not row[prompt].strip():
            return f"{where}: `{prompt}` missing or empty (dataset `{name}`)"
        if "response" in cols or entry.get("columns") is None:
            if not isinstance(row.get(response), str) or not row[response].strip():
                return f"{where}: `{response}` missing or empty (dataset `{name}`)"
        for key in ("query", "system"):
            if key in cols and not isinstance(row.get(cols[key], ""), (str, type(None))):
                return f"{where}: `{cols[key]}` must be a string"
        if "history" in cols:
            hist = row.get(cols["history"])
            if hist is not None and not (isinstance(hist, list) and all(isinstance(t, list) and len(t) == 2 for t in hist)):
                return f"{where}: `{cols['history']}` must be a list of [user, assistant] pairs"
        return None
    if formatting in ("sharegpt", "openai"):
        tags = entry.get("tags", {})
        msgs = row.get(cols.get("messages", "conversations"))
        if not isinstance(msgs, list) or not msgs:
            return f"{where}: `{cols.get('messages', 'conversations')}` must be a non-empty list of messages"
        role, content = tags.get("role_tag", "from"), tags.get("content_tag", "value")
        user, assistant = tags.get("user_tag", "human"), tags.get("assistant_tag", "gpt")
        system = tags.get("system_tag", "system")
        turns = [m for m in msgs if m.get(role) != system]
        for i, msg in enumerate(turns):
            want = user if i % 2 == 0 else assistant
            if msg.get(role) != want:
                return f"{where}: message {i + 1} has {role}={msg.get(role)!r}, expected {want!r} (tags of dataset `{name}`)"
            if not isinstance(msg.get(content), str) or not msg[content].strip():
                return f"{where}: message {i + 1} has an empty `{content}`"
        if len(turns) % 2:
            return f"{where}: conversation ends on a user turn; it needs a final {assistant!r} answer"
        return None
    return f"{where}: unknown formatting {formatting!r} (LlamaFactory accepts alpaca, sharegpt, openai)"


def check_registry(path: Path = DATASET_INFO, dataset_dir: Path = ROOT) -> list[str]:
    """Every entry's file exists, parses and matches its formatting/columns/tags."""
    problems: list[str] = []
    try:
        registry = load_registry(path)
    except DataError as exc:
        return [str(exc)]
    for name, entry in registry.items():
        if not isinstance(entry, dict):
            problems.append(f"{path.name}: entry `{name}` must be an object")
            continue
        if any(k in entry for k in ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url")):
            continue  # hub datasets cannot be checked offline
        if "file_name" not in entry:
            problems.append(f"{path.name}: entry `{name}` has no file_name")
            continue
        file = dataset_dir / entry["file_name"]
        if not file.exists():
            problems.append(f"{path.name}: `{name}` points to {entry['file_name']}, which does not exist")
            continue
        try:
            rows = _load_rows(file)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if not rows:
            problems.append(f"{entry['file_name']}: dataset `{name}` has no rows")
        for row in rows:
            problem = _check_row(name, file, entry, row)
            if problem:
                problems.append(problem)
                break
    return problems

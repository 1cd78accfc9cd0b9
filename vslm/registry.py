"""dataset_info.json at the repository root: the registry LlamaFactory and LlamaBoard read.

Every writer goes through `publish`: under a file lock it loads the registry, refuses to replace an existing data
file or entry without --replace, writes the data files and merges its entries in one atomic write. Other entries
are never touched, and parallel writers never lose each other's entries.
"""

from __future__ import annotations

import csv
import io
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from .jsonio import DataError, atomic_write_bytes, atomic_write_json, read_jsonl, read_text, text_lines
from .paths import DATASET_INFO, ROOT

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CHOOSE = "pass --replace to overwrite it, or choose another --name (or --out)"


def check_name(name: str, flag: str = "--name") -> str:
    """A dataset name that stays a plain file name: no paths, no empty prefix."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DataError(f"{flag} {name!r} is not a valid dataset name: use letters, digits, `_` and `-` (at most 64, "
                        f"starting with a letter or digit), e.g. finance_v2")
    return name


@contextmanager
def registry_lock(path: Path = DATASET_INFO) -> Iterator[None]:
    """Hold the registry's lock file (beside it) for a load-merge-write."""
    lock = path.parent / f".{path.name}.lock"
    try:
        with FileLock(str(lock), timeout=120):
            yield
    except Timeout:
        raise DataError(f"{lock}: another vslm command has been writing {path.name} for 2 minutes; let it finish, "
                        f"then run again") from None


def load_registry(path: Path = DATASET_INFO) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); fix it by hand, nothing was written") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of dataset entries")
    return data


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def check_clash(entries: dict[str, dict[str, Any]], files: dict[Path, bytes | None], *, replace: bool,
                registry_path: Path = DATASET_INFO, registry: dict[str, Any] | None = None) -> None:
    """Refuse, naming the file or entry, to replace an existing data file whose content differs (None: not known yet,
    so any existing file) or an entry registered with other settings, unless `replace`; and refuse always to write
    over the file of another registered dataset."""
    registry = load_registry(registry_path) if registry is None else registry
    base = registry_path.parent.resolve()
    owners = {(base / e["file_name"]).resolve(): n for n, e in registry.items()
              if isinstance(e, dict) and isinstance(e.get("file_name"), str) and n not in entries}
    for path in files:
        owner = owners.get(path.resolve())
        if owner:
            raise DataError(f"{_shown(path)} is the file of dataset `{owner}` in {registry_path.name}; writing there would "
                            f"break it — choose another --out or --name")
    if replace:
        return
    for name, entry in entries.items():
        old = registry.get(name)
        if old is not None and old != entry:
            where = old.get("file_name") if isinstance(old, dict) else None
            raise DataError(f"{registry_path.name}: dataset `{name}` is already registered"
                            + (f" ({where})" if where else "") + f" with other settings; nothing was written — {CHOOSE}")
    for path, content in files.items():
        if path.exists() and (content is None or not path.is_file() or path.read_bytes() != content):
            raise DataError(f"{_shown(path)} already exists with other content; nothing was written — {CHOOSE}")


def publish(outputs: dict[str, tuple[Path, str, dict[str, Any]]], *, replace: bool = False,
            registry_path: Path = DATASET_INFO) -> None:
    """Write each dataset's file and register its entry ({name: (file, content, entry)}): all or nothing, under the
    registry lock, after `check_clash`."""
    files = {path: content.encode("utf-8") for path, content, _ in outputs.values()}
    entries = {name: entry for name, (_, _, entry) in outputs.items()}
    for path in files:
        if path.exists() and not path.is_file():
            raise DataError(f"{_shown(path)} is a folder; give a file path (e.g. {_shown(path / 'data.jsonl')})")
    with registry_lock(registry_path):
        registry = load_registry(registry_path)
        check_clash(entries, files, replace=replace, registry_path=registry_path, registry=registry)
        previous = {path: path.read_bytes() if path.exists() else None for path in files}
        try:
            for path, data in files.items():
                atomic_write_bytes(path, data)
            atomic_write_json(registry_path, {**registry, **entries})  # one write: all entries or none
        except BaseException:
            for path, old in previous.items():  # put the data files back as they were
                if old is None:
                    path.unlink(missing_ok=True)
                else:
                    atomic_write_bytes(path, old)
            raise


def alpaca_entry(file_rel: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    if any(r.get("history") for r in rows):
        columns["history"] = "history"
    if any(r.get("system") for r in rows):
        columns["system"] = "system"
    return {"file_name": file_rel, "formatting": "alpaca", "columns": columns}


def text_entry(file_rel: str) -> dict[str, Any]:
    return {"file_name": file_rel, "columns": {"prompt": "text"}}


def load_rows(file: Path) -> list[dict[str, Any]]:
    """The rows of a registered file (.jsonl, .json list, .csv, .txt), each with its `_line`."""
    suffix = file.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(file)
    if suffix not in (".csv", ".txt"):
        raise DataError(f"{file}: unsupported extension {suffix} (use .jsonl, .json, .csv or .txt)")
    text = read_text(file)
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            return [dict(r, _line=reader.line_num) for r in reader]
        except csv.Error as exc:
            raise DataError(f"{file}:{reader.line_num}: unreadable CSV ({exc})") from exc
    return [{"text": line.rstrip("\r\n"), "_line": i + 1} for i, line in enumerate(text_lines(text))]


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
        if not all(isinstance(m, dict) for m in msgs):
            return f"{where}: every message must be a JSON object"
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
    """Every entry's file exists, parses and matches its formatting/columns/tags; every bad file is listed."""
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
        if not isinstance(entry.get("file_name"), str):
            problems.append(f"{path.name}: entry `{name}` has no file_name")
            continue
        file = dataset_dir / entry["file_name"]
        if not file.is_file():
            problems.append(f"{path.name}: `{name}` points to {entry['file_name']}, which does not exist")
            continue
        try:
            rows = load_rows(file)
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

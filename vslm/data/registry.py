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

from ..core.errors import DataError
from ..core.jsonio import atomic_write_bytes, atomic_write_json, read_jsonl, read_text, text_lines
from ..core.paths import DATASET_INFO, ROOT, rel

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
            raise DataError(f"{rel(path)} is the file of dataset `{owner}` in {registry_path.name}; writing there would "
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
            raise DataError(f"{rel(path)} already exists with other content; nothing was written — {CHOOSE}")


def publish(outputs: dict[str, tuple[Path, str, dict[str, Any]]], *, replace: bool = False,
            registry_path: Path = DATASET_INFO) -> None:
    """Write each dataset's file and register its entry ({name: (file, content, entry)}): all or nothing, under the
    registry lock, after `check_clash`."""
    files = {path: content.encode("utf-8") for path, content, _ in outputs.values()}
    entries = {name: entry for name, (_, _, entry) in outputs.items()}
    for path in files:
        if path.exists() and not path.is_file():
            raise DataError(f"{rel(path)} is a folder; give a file path (e.g. {rel(path / 'data.jsonl')})")
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
    """The entry of an alpaca JSONL written by convert: every LlamaFactory column its rows carry."""
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    for key in ("history", "system", "tools", "images", "videos", "audios"):
        if any(r.get(key) for r in rows):
            columns[key] = key
    entry: dict[str, Any] = {"file_name": file_rel, "formatting": "alpaca", "columns": columns}
    return _label_and_ranking(entry, rows)


def sharegpt_entry(file_rel: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry of a sharegpt JSONL written by convert (default tags: from/value, human/gpt/function_call/observation/system)."""
    columns = {"messages": "conversations"}
    for key in ("system", "tools", "images", "videos", "audios"):
        if any(r.get(key) for r in rows):
            columns[key] = key
    return _label_and_ranking({"file_name": file_rel, "formatting": "sharegpt", "columns": columns}, rows)


def _label_and_ranking(entry: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    if any("label" in r for r in rows):
        entry["columns"]["kto_tag"] = "label"
    if any("chosen" in r for r in rows):
        entry["ranking"] = True
        entry["columns"].update(chosen="chosen", rejected="rejected")
        entry["columns"].pop("response", None)
    return entry


def text_entry(file_rel: str) -> dict[str, Any]:
    return {"file_name": file_rel, "columns": {"prompt": "text"}}


# --- what LlamaFactory 0.9.5 reads (llamafactory/data/parser.py, loader.py, converter.py) ----------------------------

EXTENSIONS = ("arrow", "csv", "json", "jsonl", "parquet", "txt")  # extras/constants.py FILEEXT2TYPE
HUBS = {"hf_hub_url": "the Hugging Face Hub", "ms_hub_url": "ModelScope", "om_hub_url": "Modelers (openMind)"}
COLUMN_KEYS = ("prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos", "audios",
               "chosen", "rejected", "kto_tag")
DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "messages": "conversations"}
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
MEDIA = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}  # extras/constants.py placeholders
FORMATTINGS = ("alpaca", "sharegpt", "openai")


def lf_attr(entry: dict[str, Any]) -> dict[str, Any]:
    """The column and tag names LlamaFactory's DatasetAttr.join gives an entry: the defaults when `columns`/`tags` is
    absent, and only the names listed when it is present (the others become None)."""
    cols, tags = entry.get("columns"), entry.get("tags")
    attr: dict[str, Any] = {k: cols.get(k) if isinstance(cols, dict) else DEFAULT_COLUMNS.get(k) for k in COLUMN_KEYS}
    attr.update({k: tags.get(k) if isinstance(tags, dict) else v for k, v in DEFAULT_TAGS.items()})
    attr["formatting"] = entry.get("formatting", "alpaca")
    attr["ranking"] = entry.get("ranking", False)
    return attr


def stage_of(attr: dict[str, Any]) -> str:
    """The LlamaFactory stage an entry's rows are shaped for: rm/dpo (ranking), kto, pt (prompt only) or sft."""
    if attr["ranking"]:
        return "ranking"
    if attr["kto_tag"]:
        return "kto"
    if attr["formatting"] == "alpaca" and not attr["response"]:
        return "pt"
    return "sft"


def unchecked_reason(entry: dict[str, Any]) -> str | None:
    """Why an entry cannot be checked offline (a hub or cloud dataset), as parser.get_dataset_list picks its source;
    None for a local file, folder or script folder."""
    hubs = [k for k in HUBS if k in entry]
    if hubs:
        return "; ".join(f"{k} {entry[k]!r} is downloaded from {HUBS[k]} when LlamaFactory loads it" for k in hubs)
    if "script_url" in entry:
        return None
    if "cloud_file_name" in entry:
        return f"cloud_file_name {entry['cloud_file_name']!r} is read from S3/GCS when LlamaFactory loads it"
    return None


def data_files(local: Path) -> list[Path]:
    """The files LlamaFactory reads for a `file_name`: the file, or every entry of a folder (loader.py), all of one
    readable type; a DataError names the rule otherwise."""
    shown = rel(local)
    if local.is_dir():
        files = sorted(local.iterdir())
        if not files:
            raise DataError(f"{shown}: empty folder; LlamaFactory reads every file of a file_name folder and needs at least one")
    elif local.is_file():
        files = [local]
    else:
        raise DataError(f"{shown}: not found (LlamaFactory reads file_name relative to dataset_dir)")
    kinds = {f.suffix[1:] for f in files}  # case-sensitive, as loader.py's FILEEXT2TYPE lookup
    bad = sorted(f for f in files if f.suffix[1:] not in EXTENSIONS)
    if bad:
        raise DataError(f"{rel(bad[0])}: LlamaFactory reads only {', '.join('.' + e for e in EXTENSIONS)} files "
                        f"(loader.py), not {bad[0].suffix or 'a file without an extension' if bad[0].is_file() else 'a folder'}")
    if len({"json" if k == "jsonl" else k for k in kinds}) > 1:
        raise DataError(f"{shown}: a file_name folder must hold files of one type (LlamaFactory: File types should be "
                        f"identical); found {', '.join('.' + k for k in sorted(kinds))}")
    return files


def _columnar_rows(file: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if file.suffix == ".parquet":
            table = pq.read_table(file)
        else:  # datasets' arrow builder: an IPC stream, else an IPC file
            with pa.memory_map(str(file)) as source:
                try:
                    table = pa.ipc.open_stream(source).read_all()
                except pa.ArrowInvalid:
                    source.seek(0)
                    table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{rel(file)}: unreadable {file.suffix[1:]} file ({str(exc).splitlines()[0]})") from None
    return [dict(r, _line=i + 1) for i, r in enumerate(table.to_pylist())]


def load_rows(file: Path) -> list[dict[str, Any]]:
    """The rows of a registered file or folder (.jsonl, .json, .csv, .txt, .parquet, .arrow), each with its `_line`
    (the row number for parquet/arrow) and, from a folder, its `_file`."""
    if file.is_dir():
        return [dict(r, _file=f) for f in data_files(file) for r in load_rows(f)]
    suffix = file.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(file)
    if suffix in (".parquet", ".arrow"):
        return _columnar_rows(file)
    if suffix not in (".csv", ".txt"):
        raise DataError(f"{file}: unsupported extension {suffix or '(none)'} (LlamaFactory reads "
                        f"{', '.join('.' + e for e in EXTENSIONS)})")
    text = read_text(file)
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            return [dict(r, _line=reader.line_num) for r in reader]
        except csv.Error as exc:
            raise DataError(f"{file}:{reader.line_num}: unreadable CSV ({exc})") from exc
    return [{"text": line.rstrip("\r\n"), "_line": i + 1} for i, line in enumerate(text_lines(text))]


def entry_rows(entry: dict[str, Any], dataset_dir: Path) -> list[dict[str, Any]] | None:
    """The rows of a local entry (file_name file or folder), None for a hub, cloud or script dataset."""
    if any(k in entry for k in (*HUBS, "script_url", "cloud_file_name")) or not isinstance(entry.get("file_name"), str):
        return None
    local = dataset_dir / entry["file_name"]
    data_files(local)
    return load_rows(local)


class RowProblem(Exception):
    """A row LlamaFactory would skip, fail on, or train on nothing; str() says which rule."""


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowProblem(f"{what} must be a string, not {type(value).__name__}")
    return value


def _function_call(content: str, where: str) -> None:
    try:
        calls = json.loads(content)
    except json.JSONDecodeError:
        raise RowProblem(f"{where} is not JSON; LlamaFactory's FunctionFormatter fails on it at training time "
                         "(formatter.py: Invalid JSON format in function message)") from None
    calls = calls if isinstance(calls, list) else [calls]
    if not calls or not all(isinstance(c, dict) and "name" in c and "arguments" in c for c in calls):
        raise RowProblem(f"{where} must be JSON {{\"name\": ..., \"arguments\": ...}} (or a list of them); LlamaFactory's "
                         "FunctionFormatter fails otherwise (formatter.py)")


def align(row: dict[str, Any], attr: dict[str, Any]) -> dict[str, Any]:
    """The row as LlamaFactory's converter aligns it ({prompt, response, system, tools, images, videos, audios},
    messages as {role, content}), or RowProblem naming the rule by which LlamaFactory would skip it or fail."""
    def col(key: str) -> Any:
        return row.get(attr[key]) if attr[key] else None

    if attr["formatting"] == "alpaca":
        prompt: list[dict[str, str]] = []
        history = col("history")
        if isinstance(history, list):
            for i, turn in enumerate(history, 1):
                if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                    raise RowProblem(f"`{attr['history']}` item {i} must be a [user, assistant] pair of strings "
                                     "(converter.py unpacks each into two turns)")
                prompt += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
        query = [t for k in ("prompt", "query") if (t := _text(col(k), f"`{attr[k]}`"))]
        prompt.append({"role": "user", "content": "\n".join(query)})
        label = col("kto_tag")
        if attr["kto_tag"] and isinstance(label, bool):
            answer = {"role": "assistant", "content": _text(col("response"), f"`{attr['response']}`")}
            empty = {"role": "assistant", "content": ""}
            response = [answer, empty] if label else [empty, answer]
        elif attr["ranking"] and isinstance(col("chosen"), str) and isinstance(col("rejected"), str):
            response = [{"role": "assistant", "content": col("chosen")}, {"role": "assistant", "content": col("rejected")}]
        elif attr["response"] and isinstance(col("response"), str):
            response = [{"role": "assistant", "content": col("response")}]
        else:
            response = []
        system = col("system")
    else:
        msgs = col("messages")
        name = attr["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise RowProblem(f"`{name}` must be a list of message objects")
        role, content = attr["role_tag"], attr["content_tag"]
        for i, msg in enumerate(msgs, 1):
            if role not in msg or content not in msg:
                raise RowProblem(f"`{name}` message {i} lacks `{role if role not in msg else content}` (the entry's "
                                 "role_tag/content_tag; LlamaFactory's converter fails on it)")
        mapping = {attr["user_tag"]: "user", attr["assistant_tag"]: "assistant", attr["observation_tag"]: "observation",
                   attr["function_tag"]: "function", attr["system_tag"]: "system"}
        if attr["system_tag"] and msgs and msgs[0][role] == attr["system_tag"]:
            system, msgs = msgs[0][content], msgs[1:]
        else:
            system = col("system")
        aligned = []
        if attr["formatting"] == "openai":  # tool_calls become a function turn; consecutive tool answers one observation
            pending: list[str] = []
            for msg in msgs:
                kind, text = msg[role], msg[content]
                if kind in (attr["assistant_tag"], attr["function_tag"]) and msg.get("tool_calls"):
                    text, kind = json.dumps([c["function"] for c in msg["tool_calls"]], ensure_ascii=False), attr["function_tag"]
                if kind == attr["observation_tag"]:
                    pending.append(text)
                    continue
                if pending:
                    aligned.append({"role": "observation", "content": "\n</tool_response>\n<tool_response>\n".join(pending)})
                    pending = []
                if kind not in mapping:
                    raise RowProblem(f"`{name}` has {role}={kind!r}, which none of the entry's tags names (LlamaFactory's "
                                     "openai converter fails on it)")
                aligned.append({"role": mapping[kind], "content": text})
        else:
            aligned = [{"role": mapping.get(m[role], m[role]), "content": m[content]} for m in msgs]
        tags = ((attr["user_tag"], attr["observation_tag"]), (attr["assistant_tag"], attr["function_tag"]))
        if attr["formatting"] == "openai":  # checked after mapping, on LlamaFactory's role names
            tags, seen = (("user", "observation"), ("assistant", "function")), [m["role"] for m in aligned]
        else:
            seen = [m[role] for m in msgs]
        for i, kind in enumerate(seen):
            if kind not in tags[i % 2]:
                shown = " or ".join(repr(t) for t in tags[i % 2] if t)
                raise RowProblem(f"turn {i + 1} of `{name}` has {role}={kind!r}, expected {shown} — LlamaFactory skips a "
                                 "row whose turns do not alternate user/observation and assistant/function_call after an "
                                 "optional first system message (converter.py)")
        tags = ((attr["user_tag"], attr["observation_tag"]), (attr["assistant_tag"], attr["function_tag"]))
        if attr["ranking"] and len(aligned) % 2 == 0:
            raise RowProblem(f"`{name}` must end on a user turn in ranking data (the answers are `{attr['chosen']}`/"
                             f"`{attr['rejected']}`); LlamaFactory skips it otherwise (converter.py)")
        if not attr["ranking"] and len(aligned) % 2:
            raise RowProblem(f"`{name}` must end on an assistant (or function_call) turn; LlamaFactory skips a row with "
                             "an odd number of turns (converter.py)")
        label = col("kto_tag")
        if attr["kto_tag"] and isinstance(label, bool):
            empty = {"role": "assistant", "content": ""}
            prompt, response = aligned[:-1], ([aligned[-1], empty] if label else [empty, aligned[-1]])
        elif attr["ranking"] and isinstance(col("chosen"), dict) and isinstance(col("rejected"), dict):
            prompt, response = aligned, []
            for key in ("chosen", "rejected"):
                answer = col(key)
                if answer.get(role) not in tags[1] or answer.get(role) is None:
                    raise RowProblem(f"`{attr[key]}` has {role}={answer.get(role)!r}, expected "
                                     f"{' or '.join(repr(t) for t in tags[1] if t)} (converter.py)")
                response.append({"role": mapping[answer[role]], "content": answer.get(content)})
        else:
            prompt, response = aligned[:-1], aligned[-1:]
    tools = col("tools")
    return {"prompt": prompt, "response": response, "system": system, "tools": tools,
            **{k: col(k) for k in MEDIA}}


def check_aligned(example: dict[str, Any], attr: dict[str, Any]) -> None:
    """The rules an aligned row must meet for its stage to train on it: the processors' shape checks
    (processor/*.py), non-empty answers, JSON tools and function calls, one media file per placeholder."""
    stage = stage_of(attr)
    prompt, response = example["prompt"], example["response"]
    if stage == "pt":
        if not prompt[0]["content"].strip():
            raise RowProblem(f"`{attr['prompt']}` missing or empty — a pre-training row is its text")
        return
    if stage == "kto":
        if not isinstance(example.get("kto_value"), bool):
            raise RowProblem(f"`{attr['kto_tag']}` must be true or false — LlamaFactory's converter reads any other "
                             "value as a plain SFT row, which the KTO stage drops (processor/feedback.py)")
    if stage == "ranking" and len(response) < 2:
        raise RowProblem(f"`{attr['chosen']}` and `{attr['rejected']}` must both be "
                         + ("strings" if attr["formatting"] == "alpaca" else "message objects")
                         + " — LlamaFactory's pairwise stage drops the row otherwise (processor/pairwise.py)")
    if stage == "sft" and len(response) != 1:
        raise RowProblem(f"`{attr['response']}` missing or not a string — LlamaFactory's supervised stage drops a row "
                         "without an answer (processor/supervised.py)")
    if len(prompt) % 2 != 1:
        raise RowProblem("the prompt must end on a user turn — LlamaFactory drops the row (processor/supervised.py)")
    answers = [response[0] if example["kto_value"] else response[1]] if stage == "kto" else response
    for msg in prompt + answers:
        if not isinstance(msg["content"], str):
            raise RowProblem(f"a {msg['role']} turn's content must be a string, not {type(msg['content']).__name__}")
    if attr["formatting"] == "alpaca" and stage == "sft" and not response[0]["content"].strip():
        raise RowProblem(f"`{attr['response']}` missing or empty — LlamaFactory would train the model to answer with nothing")
    for msg in [m for m in prompt if m["role"] in ("assistant", "function")] + answers:
        if not msg["content"].strip():
            raise RowProblem(f"an {msg['role'] if msg['role'] != 'function' else 'function_call'} turn is empty — "
                             "LlamaFactory would train the model to answer with nothing")
        if msg["role"] == "function":
            _function_call(msg["content"], "a function_call turn")
    tools = example["tools"]
    if tools not in (None, ""):
        if not isinstance(tools, str):
            raise RowProblem(f"`{attr['tools']}` must be a JSON string (LlamaFactory's ToolFormatter json.loads it; "
                             "formatter.py)")
        try:
            json.loads(tools)
        except json.JSONDecodeError:
            raise RowProblem(f"`{attr['tools']}` is not JSON — LlamaFactory's ToolFormatter fails on it at training time "
                             "(formatter.py: Invalid JSON format in tool description)") from None
    texts = [m["content"] for m in prompt + response if isinstance(m["content"], str)]
    for key, placeholder in MEDIA.items():
        media = example[key]
        count = 0 if media is None else len(media) if isinstance(media, list) else 1
        wanted = sum(t.count(placeholder) for t in texts)
        if stage in ("ranking", "kto"):  # both answers are encoded with the same prompt
            wanted = sum(m["content"].count(placeholder) for m in prompt) + max(
                (m["content"].count(placeholder) for m in response), default=0)
        if media is not None and not (isinstance(media, str) or isinstance(media, list)):
            raise RowProblem(f"`{attr[key]}` must be a path or a list of paths")
        if count != wanted:
            raise RowProblem(f"{count} item(s) in `{attr[key] or key}` but {wanted} {placeholder} placeholder(s) in the "
                             f"messages — LlamaFactory's multimodal plugins fail on the mismatch (mm_plugin.py "
                             "_validate_messages)")


def check_entry(name: str, entry: Any, dataset_dir: Path, registry_name: str = "dataset_info.json") -> list[str]:
    """Problems of one entry, each naming the LlamaFactory rule ([] for a good or an unchecked hub/cloud entry)."""
    if not isinstance(entry, dict):
        return [f"{registry_name}: entry `{name}` must be an object"]
    for key in ("columns", "tags"):
        if key in entry and not isinstance(entry[key], dict):
            return [f"{registry_name}: `{name}`.{key} must be an object (LlamaFactory's parser.py reads it with .get)"]
    if entry.get("formatting", "alpaca") not in FORMATTINGS:
        return [f"{registry_name}: `{name}` has formatting {entry['formatting']!r}; LlamaFactory 0.9.5 accepts "
                f"{', '.join(FORMATTINGS)} (converter.py)"]
    if unchecked_reason(entry):
        return []
    if "script_url" in entry:
        folder = dataset_dir / str(entry["script_url"])
        if not folder.is_dir():
            return [f"{registry_name}: `{name}` has script_url {entry['script_url']!r}, but {rel(folder)} is not a "
                    f"folder (LlamaFactory loads script_url from dataset_dir)"]
        scripts = sorted(p.name for p in folder.glob("*.py"))
        if scripts:
            return [f"{rel(folder)}: `{name}` is a loading script ({scripts[0]}); datasets 4 no longer runs loading "
                    f"scripts, so LlamaFactory cannot load it — convert the data to .jsonl/.parquet files in that folder"]
        return []
    if not isinstance(entry.get("file_name"), str):
        return [f"{registry_name}: entry `{name}` has none of file_name, cloud_file_name, script_url, hf_hub_url, "
                "ms_hub_url, om_hub_url (LlamaFactory's parser.py needs one)"]
    local = dataset_dir / entry["file_name"]
    if not local.exists():
        return [f"{registry_name}: `{name}` points to {entry['file_name']}, which does not exist"]
    try:
        rows = entry_rows(entry, dataset_dir) or []
    except DataError as exc:
        return [str(exc)]
    if not rows:
        return [f"{entry['file_name']}: dataset `{name}` has no rows"]
    attr = lf_attr(entry)
    present = set().union(*(r.keys() for r in rows))
    needed = [k for k in (("messages", "tools", *MEDIA, "kto_tag") if attr["formatting"] != "alpaca" else
                          ("prompt", "query", "history", "system", "tools", *MEDIA, "kto_tag"))
              if attr[k] and (k not in ("system", "tools") or attr["formatting"] != "openai")]
    if attr["ranking"]:
        needed += ["chosen", "rejected"]
    elif attr["formatting"] == "alpaca" and attr["response"]:
        needed.append("response")
    missing = [attr[k] for k in needed if attr[k] not in present]
    if attr["formatting"] == "sharegpt" and attr["system"] and attr["system"] not in present and any(
            not (isinstance(m := r.get(attr["messages"]), list) and m and isinstance(m[0], dict)
                 and attr["system_tag"] and m[0].get(attr["role_tag"]) == attr["system_tag"]) for r in rows):
        missing.append(attr["system"])  # read only when a row does not start with a system message
    if attr["formatting"] != "alpaca" and not attr["messages"]:
        return [f"{registry_name}: `{name}` is {attr['formatting']} but its columns name no `messages` (LlamaFactory's "
                "converter reads example[None] and fails)"]
    if attr["ranking"] and not (attr["chosen"] and attr["rejected"]):
        return [f"{registry_name}: `{name}` has ranking: true but its columns name no `chosen`/`rejected` (converter.py)"]
    if missing:
        return [f"{rel(local)}: dataset `{name}` has no column `{missing[0]}` (named by its entry"
                f"{'' if 'columns' in entry else ' by default'}); LlamaFactory's converter fails with KeyError — "
                "fix `columns` in the entry or the file"]
    for row in rows:
        file = row.get("_file", local)
        where = f"{rel(file)}:{row.get('_line', '?')}"
        try:
            example = align(row, attr)
            example["kto_value"] = row.get(attr["kto_tag"]) if attr["kto_tag"] else None
            check_aligned(example, attr)
        except RowProblem as exc:
            return [f"{where}: {exc} (dataset `{name}`)"]
    return []


def check_registry(path: Path = DATASET_INFO, dataset_dir: Path = ROOT) -> list[str]:
    """Every local entry is one LlamaFactory 0.9.5 loads and trains on: its file or folder exists, parses and matches
    its formatting/columns/tags; every bad entry is listed (its first bad row). Hub and cloud entries are not
    checked here: `unchecked_entries` says which and why."""
    try:
        registry = load_registry(path)
    except DataError as exc:
        return [str(exc)]
    return [p for name, entry in registry.items() for p in check_entry(name, entry, dataset_dir, path.name)]


def unchecked_entries(path: Path = DATASET_INFO) -> list[str]:
    """`name: why` for each entry that cannot be checked offline (hub and cloud datasets)."""
    return [f"`{name}`: {reason}" for name, entry in load_registry(path).items()
            if isinstance(entry, dict) and (reason := unchecked_reason(entry))]

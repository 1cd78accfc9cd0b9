"""Property: whatever bytes, encoding (UTF-8, UTF-8 with BOM, GBK, UTF-16) and CSV/JSON/JSONL shape reach
`convert`, it either exits with faithful rows (the text that went in comes out verbatim, only the ends of cells
trimmed) or raises one DataError naming the source; the repository is byte-identical afterwards, and a refused
conversion leaves the registry copy and the output folder untouched."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from conftest import ROOT

from vslm.data.convert import convert
from vslm.core.errors import DataError
from vslm.core.jsonio import read_jsonl

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REAL_TEXT = sorted({r[k] for f in ("telecom/telecom_train.jsonl", "finance/finance_eval.jsonl", "platform/platform_train.jsonl")
                    for r in read_jsonl(ROOT / "datasets" / f)[:40] for k in ("instruction", "output")})
TRICKY = ["", "  ", " \n", "List<String>", "a<b and c>d", "第一行\n  缩进的第二行\r\n第三行", "\"引号\", 逗号", "<p>段落</p><br>",
          "tab\there", "\u2028分隔\u2029", "١٢٣ עברית", "😀 emoji", "\ufeff开头"]
CELL = st.one_of(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24),
                 st.sampled_from(REAL_TEXT), st.sampled_from(TRICKY))
FILLED = CELL.filter(str.strip)
SHAPES = [("csv", ".csv"), ("alpaca", ".jsonl"), ("alpaca", ".json"), ("distilled", ".jsonl"), ("openai", ".jsonl"),
          ("sharegpt", ".json")]
ENCODINGS = ["utf-8", "utf-8-sig", "gbk", "utf-16"]


def repository_digest() -> str:
    digest = hashlib.sha256()
    for path in [ROOT / "dataset_info.json", *sorted((ROOT / "datasets").rglob("*"))]:
        if path.is_file():
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def record(fmt: str, row: dict) -> dict:
    if fmt in ("alpaca", "distilled", "csv"):
        return row
    user = row["instruction"] + ("\n" + row["input"] if row["input"] else "")
    if fmt == "openai":
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}],
                "category": row["category"]}
    return {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": row["output"]}], "category": row["category"]}


def expected(fmt: str, row: dict) -> dict | None:
    """The converted row, or None when the row is invalid (empty prompt or answer after trimming)."""
    if fmt in ("openai", "sharegpt"):
        prompt, query = (row["instruction"] + ("\n" + row["input"] if row["input"] else "")).strip(), ""
    else:
        prompt, query = row["instruction"].strip(), row["input"].strip()
    answer = row["output"].strip()
    return {"instruction": prompt, "input": query, "output": answer, "category": row["category"]} if prompt and answer else None


def serialize(fmt: str, suffix: str, rows: list[dict]) -> str:
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["instruction", "input", "output", "category"])
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    records = [record(fmt, r) for r in rows]
    if suffix == ".json":
        return json.dumps(records, ensure_ascii=False, indent=1)
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


@st.composite
def sources(draw):
    fmt, suffix = draw(st.sampled_from(SHAPES))
    encoding = draw(st.sampled_from(ENCODINGS))
    mostly_filled = st.one_of(FILLED, FILLED, FILLED, CELL)  # mostly valid rows, so both outcomes are exercised
    rows = draw(st.lists(st.fixed_dictionaries({"instruction": mostly_filled, "input": CELL, "output": mostly_filled,
                                                "category": CELL}), min_size=1, max_size=6))
    if encoding == "gbk":  # keep what GBK can encode, as a GBK export would
        rows = [{k: v.encode("gbk", errors="ignore").decode("gbk") for k, v in r.items()} for r in rows]
    text = serialize(fmt, suffix, rows)
    data = text.encode(encoding)
    if encoding == "gbk":
        try:
            assume(data.decode("utf-8") == text)  # GBK bytes that happen to be valid UTF-8 are UTF-8 (ASCII is both)
        except UnicodeDecodeError:
            pass
    return fmt, suffix, encoding, rows, data


def run_convert(fmt: str, suffix: str, data: bytes):
    """(outcome, rows written or the DataError, source path); checks the no-side-effects rules on the way."""
    before = repository_digest()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        registry = tmp / "dataset_info.json"
        shutil.copy(ROOT / "dataset_info.json", registry)
        original = registry.read_bytes()
        src = tmp / f"source{suffix}"
        src.write_bytes(data)
        try:
            convert(src, fmt, "prop", tmp / "out", registry_path=registry)
        except DataError as exc:
            assert str(src) in str(exc).splitlines()[0], f"the error names the source: {exc}"
            assert registry.read_bytes() == original and not (tmp / "out").exists(), "a refused conversion writes nothing"
            outcome, result = "error", exc
        else:
            info = json.loads(registry.read_text(encoding="utf-8"))
            shipped = json.loads(original)
            assert {k: v for k, v in info.items() if k != "prop_train"} == shipped and info["prop_train"]["file_name"] == "out/prop_train.jsonl"
            outcome, result = "ok", [{k: v for k, v in r.items() if k != "_line"} for r in read_jsonl(tmp / "out" / "prop_train.jsonl")]
    assert repository_digest() == before, "the repository is byte-identical"
    return outcome, result, src


ENCODING_ERRORS = ("not UTF-8", "not a text file", "invalid UTF-8")


@SETTINGS
@given(sources())
def test_convert_keeps_text_verbatim_or_gives_one_clear_error(source):
    fmt, suffix, encoding, rows, data = source
    outcome, result, src = run_convert(fmt, suffix, data)
    event(f"{encoding}: {outcome}")
    want = [expected(fmt, r) for r in rows]
    invalid = sum(w is None for w in want)
    unique, seen = [], set()
    for w in want:  # duplicates collapse to their first occurrence
        if w and (key := (w["instruction"], w["input"], w["output"])) not in seen:
            seen.add(key)
            unique.append(w)
    if outcome == "ok":
        assert invalid == 0 and result == unique, "faithful rows"
        return
    message = str(result)
    if encoding == "gbk" and any(e in message for e in ENCODING_ERRORS):
        return  # an encoding it would not guess: refused, never misread
    assert invalid or not unique, f"valid {encoding} input was refused: {message}"
    assert message.startswith(f"{invalid} invalid row(s) in {src}") or (not unique and "no valid rows" in message)


@SETTINGS
@given(shape=st.sampled_from(SHAPES), data=st.binary(max_size=400))
def test_random_bytes_give_rows_or_one_clear_error(shape, data):
    outcome, result, _ = run_convert(*shape, data)
    event(outcome)
    assert outcome == "error" or result, "a success writes rows"


@SETTINGS
@given(source=sources(), at=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=4))
def test_damaged_files_give_rows_or_one_clear_error(source, at, junk):
    fmt, suffix, _, _, data = source
    at %= len(data) + 1
    outcome, result, _ = run_convert(fmt, suffix, data[:at] + junk + data[at:])
    event(outcome)
    assert outcome == "error" or result


# --- convert keeps what LlamaFactory reads: the converted file loads to the same examples as the source ---------

LF_FIXTURES = ROOT / "tests" / "fixtures" / "lf_formats"
ALIGNED = ("_prompt", "_response", "_system", "_tools", "_images", "_videos", "_audios")


def lf_load(dataset_dir: Path, name: str, entry: dict) -> list[dict]:
    """The rows LlamaFactory 0.9.5's own loader aligns from a registry entry (offline, throw-away cache)."""
    import os
    from types import SimpleNamespace

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    with tempfile.TemporaryDirectory() as cache:
        data_args = DataArguments(dataset_dir=str(dataset_dir), overwrite_cache=True)
        attr = get_dataset_list([name], {name: entry})[0]
        dataset = _load_single_dataset(attr, SimpleNamespace(cache_dir=cache, hf_hub_token=None), data_args,
                                       SimpleNamespace(local_process_index=0, dataloader_num_workers=0))
        # no tools / no system reach the template the same way whether None or "" (template.py: `if system or tools`)
        return [{k: (r[k] or "") if k in ("_system", "_tools") else r[k] for k in ALIGNED} for r in dataset.to_list()]


def converted(src: Path, fmt: str, tmp: Path) -> tuple[list[dict], dict]:
    """LlamaFactory's rows of what `convert` wrote, and the entry convert registered."""
    registry = tmp / "dataset_info.json"
    convert(src, fmt, "conv", tmp / "out", registry_path=registry)
    entry = json.loads(registry.read_text(encoding="utf-8"))["conv_train"]
    return lf_load(tmp, "conv_train", entry), entry


def without_openai_system(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "_system"} for r in rows]


@pytest.mark.parametrize("name, fmt", [("kto_sharegpt", "openai"), ("glaive_toolcall", "sharegpt"), ("mllm_sharegpt", "openai"),
                                       ("dpo_sharegpt", "sharegpt"), ("dpo_alpaca", "alpaca"), ("alpaca_json", "alpaca"),
                                       ("sharegpt_openai_tags", "openai"), ("openai_toolcall", "openai")])
def test_llamafactory_demo_shapes_convert_to_the_same_examples(tmp_path, name, fmt):
    entry = json.loads((LF_FIXTURES / "dataset_info.json").read_text(encoding="utf-8"))[name]
    source = lf_load(LF_FIXTURES, name, entry)
    ours, written = converted(LF_FIXTURES / entry["file_name"], fmt, tmp_path)
    if entry.get("formatting") == "openai":  # LlamaFactory's openai converter appends its own system suffix
        source, ours = without_openai_system(source), without_openai_system(ours)
    assert ours == source
    if "kto_tag" in entry["columns"]:
        assert written["columns"]["kto_tag"] == "label" and sum(r["_response"][0]["content"] == "" for r in ours) == 1
    assert written.get("ranking", False) == entry.get("ranking", False)


TURN_TEXT = st.sampled_from(REAL_TEXT[:60])


@st.composite
def conversations(draw):
    """A sharegpt record as LlamaFactory's demos have them: optional system, tool calls, images, and one of
    plain / KTO label / ranking pair, for every row of a file alike."""
    kind = draw(st.sampled_from(["plain", "kto", "ranking"]))
    tools = draw(st.booleans())
    images = draw(st.booleans())
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        turns, n_images = [], 0
        for _ in range(draw(st.integers(1, 3))):
            user = draw(TURN_TEXT)
            if images and draw(st.booleans()):
                user, n_images = "<image>" + user, n_images + 1
            turns.append({"from": "human", "value": user})
            if tools and draw(st.booleans()):
                call = {"name": "lookup", "arguments": {"q": draw(TURN_TEXT)}}
                turns += [{"from": "function_call", "value": json.dumps(call, ensure_ascii=False)},
                          {"from": "observation", "value": json.dumps({"result": draw(TURN_TEXT)}, ensure_ascii=False)}]
            turns.append({"from": "gpt", "value": draw(TURN_TEXT)})
        rec: dict = {"conversations": turns}
        if draw(st.booleans()):
            rec["system"] = draw(TURN_TEXT)
        if tools:
            rec["tools"] = json.dumps([{"name": "lookup", "description": "查询", "parameters": {"type": "object", "properties": {}}}])
        if images:
            rec["images"] = [f"imgs/{i}.jpg" for i in range(n_images)]
        if kind == "kto":
            rec["label"] = draw(st.booleans())
        if kind == "ranking":
            last = turns.pop()
            rec["chosen"], rec["rejected"] = last, {"from": "gpt", "value": draw(TURN_TEXT) + "（错误）"}
        rows.append(rec)
    columns = {"messages": "conversations", **({"system": "system"} if any("system" in r for r in rows) else {}),
               **({"tools": "tools"} if tools else {}),
               **({"images": "images"} if images else {}), **({"kto_tag": "label"} if kind == "kto" else {}),
               **({"chosen": "chosen", "rejected": "rejected"} if kind == "ranking" else {})}
    return rows, {"file_name": "src.json", "formatting": "sharegpt", "ranking": kind == "ranking", "columns": columns}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_convert_then_llamafactory_gives_the_same_conversations_tools_labels_images(source):
    rows, entry = source
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "src.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        want = lf_load(tmp, "src", entry)
        unique = [w for i, w in enumerate(want) if w not in want[:i]]  # convert drops exact duplicates
        got, written = converted(tmp / "src.json", "sharegpt", tmp)
    event(f"{written['formatting']}{' ranking' if written.get('ranking') else ''}{' kto' if 'kto_tag' in written['columns'] else ''}")
    assert got == unique

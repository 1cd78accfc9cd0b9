"""Converters: round trips of every format, malformed rows with line numbers, atomic registry merges."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vslm import convert as conv
from vslm.jsonio import DataError, read_jsonl

ROWS = [
    {"instruction": "光猫亮红灯怎么办？", "input": "", "output": "请检查光纤。"},
    {"instruction": "回答关于飞跃云产品的问题", "input": "免费空间多大？", "output": "15GB。"},
]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def registry(tmp_path) -> Path:
    path = tmp_path / "dataset_info.json"
    path.write_text(json.dumps({"other": {"file_name": "x.jsonl"}}), encoding="utf-8")
    return path


def as_format(fmt: str, row: dict) -> dict:
    if fmt in ("alpaca", "distilled"):
        return row
    user = row["instruction"] + ("\n" + row["input"] if row["input"] else "")
    if fmt == "openai":
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]}
    return {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": row["output"]}]}


@pytest.mark.parametrize("fmt", ["alpaca", "distilled", "sharegpt", "openai"])
def test_round_trip_json_formats(tmp_path, registry, fmt):
    src = write_jsonl(tmp_path / "src.jsonl", [as_format(fmt, r) for r in ROWS])
    rep = conv.convert(src, fmt, "demo", tmp_path / "out", registry_path=registry)
    out = read_jsonl(tmp_path / "out" / "demo_train.jsonl")
    assert rep.kept == 2 and len(out) == 2
    for got, want in zip(out, ROWS):
        prompt = want["instruction"] + ("\n" + want["input"] if want["input"] else "")
        assert (got["instruction"] + ("\n" + got["input"] if got["input"] else "")) == prompt
        assert got["output"] == want["output"]
    reg = json.loads(registry.read_text())
    assert reg["other"] == {"file_name": "x.jsonl"}, "other entries must be untouched"
    assert reg["demo_train"]["file_name"] == "out/demo_train.jsonl"


def test_sharegpt_user_assistant_tags_and_multi_turn_history(tmp_path, registry):
    rec = {"messages": [{"role": "system", "content": "你是客服。"}, {"role": "user", "content": "你好"},
                        {"role": "assistant", "content": "您好！"}, {"role": "user", "content": "查话费"},
                        {"role": "assistant", "content": "发送CXHF到10086。"}]}
    conv.convert(write_jsonl(tmp_path / "s.jsonl", [rec]), "sharegpt", "chat", tmp_path / "o", registry_path=registry)
    row = read_jsonl(tmp_path / "o" / "chat_train.jsonl")[0]
    assert row["history"] == [["你好", "您好！"]] and row["instruction"] == "查话费" and row["system"] == "你是客服。"
    entry = json.loads(registry.read_text())["chat_train"]
    assert entry["columns"]["history"] == "history" and entry["columns"]["system"] == "system"


def test_csv_with_bom_crlf_html_and_quoted_newlines(tmp_path, registry):
    src = tmp_path / "data.csv"
    src.write_bytes("\ufeffinstruction,input,output\r\n"
                    "回答关于飞跃云产品的问题,扩容 1TB 多少钱?,\"您好！<br>专业版 1TB，\r\n每月 29 元。\"\r\n"
                    "解释安全规定,机房可以带水吗?,严禁携带液体进入 A1 机房。\r\n".encode("utf-8"))
    rep = conv.convert(src, "csv", "cloudx", tmp_path / "o", registry_path=registry)
    rows = read_jsonl(tmp_path / "o" / "cloudx_train.jsonl")
    assert rep.kept == 2
    assert rows[0]["output"] == "您好！ 专业版 1TB， 每月 29 元。"
    assert rows[0]["instruction"] == "回答关于飞跃云产品的问题"


@pytest.mark.parametrize("lines, message", [
    (['{"instruction": "a", "output": "b"}', '{"instruction": "a", "output": '], ":2: invalid JSON"),
    (['{"instruction": "a", "output": "b"}', '{"input": "x", "output": "b"}'], ":2: `instruction` missing"),
    (['{"instruction": "a", "output": "  "}'], ":1: `output` (the answer) missing or empty"),
])
def test_malformed_alpaca_rows_are_rejected_with_their_line(tmp_path, registry, lines, message):
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = registry.read_text()
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        conv.convert(src, "alpaca", "bad", tmp_path / "o", registry_path=registry)
    assert registry.read_text() == before and not (tmp_path / "o").exists()


def test_wrong_role_order_is_rejected(tmp_path, registry):
    rec = {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}
    with pytest.raises(DataError, match=r"s.jsonl:1: message 1 is 'assistant' but 'user' was expected"):
        conv.convert(write_jsonl(tmp_path / "s.jsonl", [rec]), "openai", "o", tmp_path / "o", registry_path=registry)


def test_csv_extra_field_reported_with_line(tmp_path, registry):
    src = tmp_path / "d.csv"
    src.write_text("instruction,input,output\na,b,c\na,b,c,d\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv:3: more fields than the header"):
        conv.convert(src, "csv", "d", tmp_path / "o", registry_path=registry)


def test_name_clash_refused_unless_replace(tmp_path, registry):
    src = write_jsonl(tmp_path / "a.jsonl", ROWS)
    conv.convert(src, "alpaca", "dup", tmp_path / "o", registry_path=registry)
    other = write_jsonl(tmp_path / "b.jsonl", ROWS[:1] + [{"instruction": "q", "input": "", "output": "a", "history": [["h", "i"]]}])
    with pytest.raises(DataError, match="already registered"):
        conv.convert(other, "alpaca", "dup", tmp_path / "o", registry_path=registry)
    assert len(read_jsonl(tmp_path / "o" / "dup_train.jsonl")) == 2, "the first dataset must be intact"
    conv.convert(other, "alpaca", "dup", tmp_path / "o", registry_path=registry, replace=True)
    assert "history" in json.loads(registry.read_text())["dup_train"]["columns"]


def test_failure_mid_conversion_leaves_no_partial_write(tmp_path, registry, monkeypatch):
    src = write_jsonl(tmp_path / "a.jsonl", ROWS)
    before = registry.read_text()
    real = conv.atomic_write_json

    def boom(path, data):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(conv, "atomic_write_json", boom)
    with pytest.raises(OSError, match="injected"):
        conv.convert(src, "alpaca", "half", tmp_path / "o", val_ratio=0.5, registry_path=registry)
    assert registry.read_text() == before
    assert not list((tmp_path / "o").glob("*.jsonl")), "data files written before the failure must be removed"
    monkeypatch.setattr(conv, "atomic_write_json", real)


def test_dedup_split_and_key_sample_repetition(tmp_path, registry):
    recs = [{"instruction": f"q{i}", "input": "", "output": f"a{i}" + (" 15GB" if i < 3 else "")} for i in range(20)]
    src = write_jsonl(tmp_path / "a.jsonl", recs + recs[:5])
    rep = conv.convert(src, "alpaca", "mix", tmp_path / "o", val_ratio=0.2, repeat=["15GB"], times=3, registry_path=registry)
    train = read_jsonl(tmp_path / "o" / "mix_train.jsonl")
    val = read_jsonl(tmp_path / "o" / "mix_val.jsonl")
    assert rep.duplicates == 5 and len(val) == 4
    assert {r["instruction"] for r in train}.isdisjoint({r["instruction"] for r in val})
    keyed_in_train = {r["instruction"] for r in train if "15GB" in r["output"]}
    assert sum("15GB" in r["output"] for r in train) == 3 * len(keyed_in_train)
    assert set(json.loads(registry.read_text())) >= {"mix_train", "mix_val", "other"}


text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(lambda s: s.strip())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({"instruction": text, "input": st.just(""), "output": text}), min_size=1, max_size=8),
       fmt=st.sampled_from(["alpaca", "openai", "sharegpt"]))
def test_property_every_valid_row_survives_once(tmp_path_factory, rows, fmt):
    tmp = tmp_path_factory.mktemp("prop")
    registry = tmp / "dataset_info.json"
    src = write_jsonl(tmp / "src.jsonl", [as_format(fmt, r) for r in rows])
    conv.convert(src, fmt, "p", tmp / "o", registry_path=registry)
    out = read_jsonl(tmp / "o" / "p_train.jsonl")
    want = {(r["instruction"].strip(), r["output"].strip()) for r in rows}
    assert {(r["instruction"], r["output"]) for r in out} == want
    assert len(out) == len(want)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.fixed_dictionaries({"instruction": text, "input": text, "output": text}), min_size=1, max_size=6))
def test_property_csv_round_trip_after_cleaning(rows):
    import csv
    import io
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "x.csv"
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(rows)
        src.write_text(buf.getvalue(), encoding="utf-8")
        got, errors, read = conv.read_rows(src, "csv")
        cleaned = [(conv.clean_text(r["instruction"]), conv.clean_text(r["output"])) for r in rows]
        valid = [c for c in cleaned if c[0] and c[1]]
        assert [(g["instruction"], g["output"]) for g in got] == valid
        assert len(errors) == read - len(valid)

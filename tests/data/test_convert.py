"""Converters: round trips of every format, malformed rows with line numbers, atomic registry merges."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT

from vslm.data import convert as conv
from vslm.core.errors import DataError
from vslm.core.jsonio import read_jsonl

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
    assert rep.kept == 2 and rep.cleaned == 0
    assert rows[0]["output"] == "您好！<br>专业版 1TB，\r\n每月 29 元。", "verbatim by default"
    assert rows[0]["instruction"] == "回答关于飞跃云产品的问题"
    rep = conv.convert(src, "csv", "cloudy", tmp_path / "o", registry_path=registry, clean=True)
    rows = read_jsonl(tmp_path / "o" / "cloudy_train.jsonl")
    assert rows[0]["output"] == "您好！\n专业版 1TB，\n每月 29 元。" and rep.cleaned == 1


CODE_CELL = "用泛型声明：\n```java\nList<String> names = new ArrayList<>();\nif (a<b && c>d) {\n    return;\n}\n```"
LIST_CELL = "报销步骤：\n1. 填写申请单\n2. 部门经理审批\n\n- 发票须在 30 天内提交"


def test_csv_text_is_kept_verbatim_and_clean_only_touches_html_cells(tmp_path, registry):
    import csv

    src = tmp_path / "kb.csv"
    with src.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instruction", "input", "output", "category"])
        writer.writerow(["Java 里 List<String> 是什么？", "", CODE_CELL, "code"])
        writer.writerow(["比较 a<b and c>d", "  前后空白会去掉  ", "当 a<b and c>d 同时成立时为真。", "logic"])
        writer.writerow(["报销流程？", "", LIST_CELL, "finance"])
        writer.writerow(["套餐价格？", "", "<p>月费 <b>59</b>&nbsp;元</p><p>含 30GB</p><br/>详见官网", "html"])
    conv.convert(src, "csv", "kb", tmp_path / "o", registry_path=registry)
    rows = read_jsonl(tmp_path / "o" / "kb_train.jsonl")
    assert [r["output"] for r in rows[:3]] == [CODE_CELL, "当 a<b and c>d 同时成立时为真。", LIST_CELL]
    assert rows[0]["instruction"] == "Java 里 List<String> 是什么？" and rows[1]["input"] == "前后空白会去掉"
    assert rows[3]["output"] == "<p>月费 <b>59</b>&nbsp;元</p><p>含 30GB</p><br/>详见官网"
    assert [r["category"] for r in rows] == ["code", "logic", "finance", "html"], "the CSV's other columns are kept"
    rep = conv.convert(src, "csv", "kb_clean", tmp_path / "o", registry_path=registry, clean=True)
    cleaned = read_jsonl(tmp_path / "o" / "kb_clean_train.jsonl")
    assert rep.cleaned == 1, "only the HTML cell changes"
    assert [r["output"] for r in cleaned[:3]] == [CODE_CELL, "当 a<b and c>d 同时成立时为真。", LIST_CELL]
    assert cleaned[3]["output"] == "月费 59\xa0元\n含 30GB\n\n详见官网"


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
    with pytest.raises(DataError, match=r"s.jsonl:1: message 1 is 'assistant' but 'user' or 'observation' was expected"):
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
    from vslm.data import registry as reg

    src = write_jsonl(tmp_path / "a.jsonl", ROWS)
    before = registry.read_text()

    def boom(path, data):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(reg, "atomic_write_json", boom)
    with pytest.raises(OSError, match="injected"):
        conv.convert(src, "alpaca", "half", tmp_path / "o", val_ratio=0.5, registry_path=registry)
    assert registry.read_text() == before
    assert not list((tmp_path / "o").glob("*.jsonl")), "data files written before the failure must be removed"


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
def test_property_csv_round_trip_is_verbatim(rows):
    import csv
    import io
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "x.csv"
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(rows)
        src.write_text(buf.getvalue(), encoding="utf-8", newline="")
        got, errors, read = conv.read_rows(src, "csv")
        stripped = [(r["instruction"].strip(), r["input"].strip(), r["output"].strip()) for r in rows]
        valid = [c for c in stripped if c[0] and c[2]]
        assert [(g["instruction"], g["input"], g["output"]) for g in got] == valid
        assert len(errors) == read - len(valid)


SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "datasets").glob("*/*_train.jsonl"))


@pytest.mark.parametrize("train", SHIPPED)
def test_shipped_alpaca_datasets_convert_to_the_same_rows(tmp_path, registry, train):
    rows = read_jsonl(ROOT / train)
    rep = conv.convert(ROOT / train, "alpaca", "rt", tmp_path / "o", registry_path=registry)
    unique, seen = [], set()
    for row in rows:  # key-sample repeats (exact copies) collapse to their first occurrence
        key = json.dumps([row.get(k) for k in ("system", "history", "instruction", "input", "output")], ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    got = read_jsonl(tmp_path / "o" / "rt_train.jsonl")
    assert [{k: v for k, v in r.items() if k != "_line"} for r in got] == [{k: v for k, v in r.items() if k != "_line"} for r in unique]
    assert rep.read == len(rows) and rep.duplicates == len(rows) - len(unique)


def test_unreadable_csv_is_one_error_with_its_line(tmp_path, registry):
    src = tmp_path / "huge.csv"
    src.write_text("instruction,input,output\na,,b\n\"" + "x" * 200_000 + "\",,c\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"huge.csv:\d+: unreadable CSV \(field larger than field limit"):
        conv.convert(src, "csv", "huge", tmp_path / "o", registry_path=registry)


@pytest.mark.parametrize("kwargs, message", [
    ({"out_dir": "FILE"}, r"--out .*a.jsonl is a file; give a folder"),
    ({"times": 0, "repeat": ["15GB"]}, r"--times must be at least 1"),
    ({"val_ratio": 1.0}, r"--val-ratio must be in \[0, 1\)"),
])
def test_bad_flags_are_one_error_naming_the_flag(tmp_path, registry, kwargs, message):
    src = write_jsonl(tmp_path / "a.jsonl", ROWS)
    kwargs = {k: src if v == "FILE" else v for k, v in kwargs.items()}
    with pytest.raises(DataError, match=message):
        conv.convert(src, "alpaca", "flags", kwargs.pop("out_dir", tmp_path / "o"), registry_path=registry, **kwargs)
    assert not (tmp_path / "o").exists()

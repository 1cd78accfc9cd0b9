"""`vslm stats`: every format the registry reads, exact lengths (checked against the real Qwen chat template), exact
quantiles, empty and unreadable datasets, unknown names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import ROOT

from vslm import cli
from vslm.core.errors import DataError
from vslm.core.jsonio import read_jsonl
from vslm.recipes.matrix import get_recipe
from vslm.data.registry import load_registry, load_rows
from vslm.data.stats import MARKUP, _tokenizer, dataset_stats, nearest_rank, row_lengths, token_counts

REGISTRY = load_registry()
ALPACA = {"formatting": "alpaca", "columns": {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}}


def table(text: str) -> dict[str, list[str]]:
    """dataset -> its row of the stats table, split on whitespace."""
    return {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:]}


def chat(row: dict, system: str) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}]
    for user, assistant in row.get("history") or []:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    prompt = row["instruction"] + ("\n" + row["input"] if row.get("input") else "")
    return msgs + [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]


@pytest.mark.parametrize("name, recipe", [("telecom_train", "telecom_r32"), ("finance_train", "finance_rules")])
def test_lengths_equal_the_qwen_chat_template_on_shipped_data(name, recipe):
    rows = read_jsonl(ROOT / REGISTRY[name]["file_name"])
    lengths, gets_system = row_lengths(rows, REGISTRY[name])
    system = get_recipe(recipe)["system"]
    extra = token_counts([system])[0] + MARKUP
    for row, n, add in zip(rows, lengths, gets_system):
        ids = _tokenizer().apply_chat_template(chat(row, system), tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert add and n + extra == len(ids), f"{name}:{row['_line']}"


def test_stats_of_shipped_datasets_match_their_files():
    text, problems = dataset_stats(["telecom_train", "finance_rules_corpus", "cloud_eval"])
    assert problems == []
    rows = table(text)
    for name in ("telecom_train", "finance_rules_corpus", "cloud_eval"):
        count, low, p50, p95, high = (int(v) for v in rows[name][:5])
        assert count == len(read_jsonl(ROOT / REGISTRY[name]["file_name"]))
        assert low <= p50 <= p95 <= high
    corpus = read_jsonl(ROOT / REGISTRY["finance_rules_corpus"]["file_name"])
    assert int(rows["finance_rules_corpus"][4]) == max(token_counts([r["text"] for r in corpus])) + 1, "text + end-of-text"
    assert "finance_rules(cutoff" in text.splitlines()[2]


def test_quantiles_are_values_of_the_data_and_never_exceed_the_max():
    assert nearest_rank([1, 2, 3, 4, 100], 50) == 3 and nearest_rank([1, 2, 3, 4, 100], 95) == 100
    assert nearest_rank([7], 95) == 7 and nearest_rank([5, 7], 50) == 5


def write_registry(tmp_path: Path, entries: dict) -> Path:
    path = tmp_path / "dataset_info.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    return path


def test_every_format_the_registry_reads(tmp_path):
    telecom = read_jsonl(ROOT / "datasets" / "telecom" / "telecom_train.jsonl")
    sample = [r for r in telecom if r.get("history")][:5] + telecom[:25]
    (tmp_path / "alpaca.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sample), encoding="utf-8")
    sharegpt = [{"conversations": [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]}
                                   for m in chat(r, "")[1:]]} for r in sample]
    (tmp_path / "chat.json").write_text(json.dumps(sharegpt, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    skewed = [{"instruction": "问", "input": "", "output": "答"}] * 4 + [{"instruction": "问", "input": "", "output": "很长的回答。" * 200}]
    (tmp_path / "skewed.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in skewed), encoding="utf-8")
    cloud_csv = ROOT / "datasets" / "cloud" / "cloud_service.csv"
    (tmp_path / "cloud.csv").write_bytes(cloud_csv.read_bytes())
    registry = write_registry(tmp_path, {
        "alpaca": {"file_name": "alpaca.jsonl", **ALPACA},
        "chat": {"file_name": "chat.json", "formatting": "sharegpt", "columns": {"messages": "conversations"}},
        "empty": {"file_name": "empty.jsonl", **ALPACA},
        "skewed": {"file_name": "skewed.jsonl", **ALPACA},
        "cloud": {"file_name": "cloud.csv", **ALPACA},
    })
    text, problems = dataset_stats(None, "telecom_r32", registry_path=registry)
    rows = table(text)
    assert problems == []
    assert rows["chat"][:5] == rows["alpaca"][:5], "the same conversations as ShareGPT and as Alpaca: the same lengths"
    assert rows["alpaca"][0] == "30" and int(rows["alpaca"][1]) > 12
    assert rows["empty"][:6] == ["0", "-", "-", "-", "-", "no"]
    count, low, p50, p95, high = (int(v) for v in rows["skewed"][:5])
    assert count == 5 and low == p50 and p95 == high, "nearest rank: p95 of 4 short rows and 1 long one is the long one"
    with cloud_csv.open(encoding="utf-8", newline="") as handle:
        assert int(rows["cloud"][0]) == len(list(csv.DictReader(handle))) == len(load_rows(tmp_path / "cloud.csv"))


def test_unreadable_datasets_are_listed_and_the_others_still_shown(tmp_path):
    lines = [json.dumps({k: r[k] for k in ("instruction", "input", "output")}, ensure_ascii=False) + "\n"
             for r in read_jsonl(ROOT / "datasets" / "finance" / "finance_eval.jsonl")]
    rows = [line for line in lines if line == line.encode("gbk", errors="replace").decode("gbk")][:30]  # GBK-encodable
    (tmp_path / "gbk.jsonl").write_bytes("".join(rows).encode("gbk"))
    (tmp_path / "blob.jsonl").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "broken.json").write_text('[{"instruction": "a", "output": "b"},', encoding="utf-8")
    registry = write_registry(tmp_path, {n: {"file_name": f, **ALPACA} for n, f in
                                         (("gbk", "gbk.jsonl"), ("blob", "blob.jsonl"), ("broken", "broken.json"))})
    text, problems = dataset_stats(None, "finance_rules", registry_path=registry)
    assert table(text)["gbk"][0] == str(len(rows))
    assert len(problems) == 2 and all("\n" not in p for p in problems)
    assert problems[0].startswith(f"{tmp_path / 'blob.jsonl'}: not a text file") and "broken.json:1: invalid JSON" in problems[1]


def test_unregistered_names_exit_non_zero_with_one_line(capsys):
    assert cli.main(["stats", "telecom_trian", "no_such_set"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "does not register `telecom_trian` (did you mean `telecom_train`?), `no_such_set`" in err
    with pytest.raises(DataError, match="no_such_set"):
        dataset_stats(["no_such_set"])


LF_FIXTURES = ROOT / "tests" / "fixtures" / "lf_formats"


def test_every_storage_form_and_hub_entry_of_llamafactorys_formats():
    """Every good entry of the LlamaFactory-format fixtures is read (json, jsonl, csv, txt, parquet, arrow, folder,
    script folder); hub and cloud entries are marked, not a traceback."""
    info = json.loads((LF_FIXTURES / "dataset_info.json").read_text(encoding="utf-8"))
    good = [n for n in info if not n.startswith("bad_")]
    text, problems = dataset_stats(good, "telecom_r32", registry_path=LF_FIXTURES / "dataset_info.json")
    rows = table(text)
    assert problems == []
    for name in ("alpaca_json", "alpaca_csv", "alpaca_parquet", "alpaca_arrow", "alpaca_folder", "corpus_txt", "glaive_toolcall",
                 "kto_sharegpt", "dpo_sharegpt", "mllm_sharegpt", "openai_toolcall"):
        assert int(rows[name][0]) > 0 and int(rows[name][1]) > 5, name
    assert rows["alpaca_parquet"][:5] == rows["alpaca_arrow"][:5], "the same rows as parquet and as arrow"
    assert rows["alpaca_folder"][0] == "3" and rows["alpaca_csv"][0] == "2"
    for name in ("hub_hf", "hub_ms", "hub_om", "cloud_s3", "script_folder"):
        assert " ".join(rows[name][1:4]) == "not checked offline:", name
    assert "Hugging Face Hub" in " ".join(rows["hub_hf"])


def test_sharegpt_and_tool_rows_are_counted_as_llamafactorys_processor_encodes_them():
    """Lengths equal the input_ids LlamaFactory's supervised processor builds with the qwen template (tools and
    function_call/observation turns included), not a per-row constant."""
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from vslm.data.registry import align, lf_attr

    from vslm.models.tokenizer import build_qwen_tokenizer

    info = json.loads((LF_FIXTURES / "dataset_info.json").read_text(encoding="utf-8"))
    data_args = DataArguments(template="qwen", default_system="", cutoff_len=100_000)
    tokenizer = build_qwen_tokenizer("qwen2")
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    for name in ("glaive_toolcall", "sharegpt_openai_tags", "alpaca_json"):
        entry = info[name]
        rows = load_rows(LF_FIXTURES / entry["file_name"])
        lengths, _ = row_lengths(rows, entry)
        aligned = [align(r, lf_attr(entry)) for r in rows]
        batch = {"_prompt": [a["prompt"] for a in aligned], "_response": [a["response"] for a in aligned],
                 "_system": [a["system"] or "" for a in aligned], "_tools": [a["tools"] or "" for a in aligned],
                 "_images": [None] * len(rows), "_videos": [None] * len(rows), "_audios": [None] * len(rows)}
        out = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=data_args).preprocess_dataset(batch)
        assert lengths == [len(ids) for ids in out["input_ids"]], name
    tools_row = load_rows(LF_FIXTURES / "glaive_toolcall_demo.json")[0]
    with_tools = row_lengths([tools_row], info["glaive_toolcall"])[0][0]
    without = row_lengths([{**tools_row, "tools": ""}], info["glaive_toolcall"])[0][0]
    assert with_tools - without > 50, "the tool descriptions are part of what the model reads"

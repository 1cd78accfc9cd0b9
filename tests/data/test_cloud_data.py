"""The cloud dataset: one documented command regenerates cloud_train.jsonl from the CSV byte for byte, the CSV keeps
line breaks and code, internal staff rules stay out of the customer-service data, and the eval set links to it.
Also: FORMAT.md's table of what each evaluation set measures matches the files."""

import ast
import re
import shlex
import shutil
from collections import Counter

import pytest

from conftest import ROOT

from vslm.cli import build_parser, cmd_convert
from vslm.eval.client import prompt_of
from vslm.data.convert import convert, read_rows
from vslm.core.jsonio import read_jsonl
from vslm.eval.metrics import measure_of
from vslm.data.registry import load_registry

CLOUD = ROOT / "datasets" / "cloud"
FORMAT_MD = ROOT / "datasets" / "FORMAT.md"
INTERNAL_TASKS = {"解答行政流程疑问", "解释安全规定"}


def documented_command() -> list[str]:
    """The `vslm convert` line of FORMAT.md's cloud section (there must be exactly one)."""
    text = FORMAT_MD.read_text(encoding="utf-8")
    section = re.search(r"^## Cloud customer service.*?(?=^## |\Z)", text, re.M | re.S)
    assert section, f"{FORMAT_MD}: no '## Cloud customer service' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(0), re.M | re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("vslm convert ")]
    assert len(lines) == 1, f"{FORMAT_MD}: the cloud section must show one `vslm convert` command, found {lines}"
    return shlex.split(lines[0])[1:]


def documented_args():
    args = build_parser().parse_args(documented_command())
    assert args.func is cmd_convert
    return args


def csv_rows(name: str) -> list[dict]:
    rows, errors, _ = read_rows(CLOUD / name, "csv")
    assert errors == []
    return rows


def test_documented_command_regenerates_cloud_train_byte_for_byte(tmp_path):
    args = documented_args()
    assert args.out is None and args.name == "cloud", "the documented command must write datasets/cloud/cloud_train.jsonl"
    registry = tmp_path / "dataset_info.json"
    shutil.copyfile(ROOT / "dataset_info.json", registry)
    # cmd_convert's call, with the output and the registry redirected into tmp_path
    convert(ROOT / args.source, args.format, args.name, tmp_path, val_ratio=args.val_ratio, seed=args.seed,
            repeat=args.repeat, times=args.times, replace=args.replace, skip_invalid=args.skip_invalid,
            clean=args.clean, registry_path=registry)
    assert (tmp_path / "cloud_train.jsonl").read_bytes() == (CLOUD / "cloud_train.jsonl").read_bytes(), \
        "datasets/cloud/cloud_train.jsonl is stale: run the command in datasets/FORMAT.md (cloud section)"


def test_every_repeat_key_still_picks_customer_rows():
    args = documented_args()
    rows = csv_rows("cloud_service.csv")
    for key in args.repeat:
        assert any(key in r["output"] for r in rows), f"--repeat {key!r} matches no row of cloud_service.csv"
    train = read_jsonl(CLOUD / "cloud_train.jsonl")
    repeated = [r for r in rows if any(k in r["output"] or k in r["input"] for k in args.repeat)]
    assert len(train) == len(rows) + (args.times - 1) * len(repeated)


def test_line_breaks_lists_and_code_blocks_survive_conversion():
    train = {r["input"]: r["output"] for r in read_jsonl(CLOUD / "cloud_train.jsonl")}
    code = re.search(r"```python\n(.*?)```", train["用 SDK 怎么上传文件？"], re.S)
    assert code and len(code.group(1).splitlines()) == 3
    ast.parse(code.group(1))  # a valid Python block, not one flattened line
    assert "\n2) 设置 4 位提取码" in train["怎么把文件分享给别人？"]
    assert "\n2. 设置环境变量" in train["怎么初始化客户端？"]
    assert not any("<br" in answer or "  " in answer for answer in train.values())
    badge = next(r["output"] for r in csv_rows("cloud_internal_rules.csv") if r["input"] == "工牌丢了怎么办？")
    assert "\n- 缴纳工本费 50 元\n" in badge


def test_internal_staff_rules_are_out_of_the_customer_service_data():
    customer, internal = csv_rows("cloud_service.csv"), csv_rows("cloud_internal_rules.csv")
    assert {r["instruction"] for r in customer} == {"回答关于飞跃云产品的问题", "指导用户进行技术集成"}
    assert {r["instruction"] for r in internal} == INTERNAL_TASKS and len(internal) == 45
    served = read_jsonl(CLOUD / "cloud_train.jsonl") + read_jsonl(CLOUD / "cloud_eval.jsonl")
    internal_text = {r["input"] for r in internal} | {r["output"] for r in internal}
    assert not [r["id"] if "id" in r else r["input"] for r in served
                if r["instruction"] in INTERNAL_TASKS or r["input"] in internal_text or r["output"] in internal_text]


@pytest.mark.parametrize("name,question,must,must_not", [
    ("cloud_service.csv", "清空回收站后还能恢复吗？", ["无法", "永久删除"], ["期间可随时还原；超过"]),
    ("cloud_service.csv", "SDK 支持哪些 Python 版本？", ["Python 3.8 及以上"], []),
    ("cloud_internal_rules.csv", "Windows 怎么快速锁屏？", ["Win+L"], []),
])
def test_answers_that_used_to_teach_wrong_things(name, question, must, must_not):
    answer = next(r["output"] for r in csv_rows(name) if r["input"] == question)
    assert all(s in answer for s in must) and not any(s in answer for s in must_not), answer


def test_cloud_eval_rows_link_to_training_and_say_what_they_measure():
    train = {prompt_of(r): r["output"] for r in read_jsonl(CLOUD / "cloud_train.jsonl")}
    rows = read_jsonl(CLOUD / "cloud_eval.jsonl")
    for row in rows:
        if row["task"] == "qa":
            assert row["measures"] == "reworded", row["id"]
            taught = train.get(row["taught_question"])
            assert taught is not None, f"{row['id']}: taught_question is not a cloud_train prompt"
            assert all(f in taught for f in row["key_facts"]), f"{row['id']}: the taught answer lacks a key fact"
        else:
            assert (row["task"], row["measures"], row["category"]) == ("refusal", "unanswerable", "out_of_scope"), row["id"]
    assert sum(r["measures"] == "unanswerable" for r in rows) >= 10


def measures_table() -> str:
    """FORMAT.md's table of what each registered evaluation set measures, computed from the files."""
    registry = load_registry()
    lines = ["| eval set | rows | taught (linked rows) | reworded | unanswerable: refusal | unanswerable: correction | general |",
             "|---|---|---|---|---|---|---|"]
    for name in sorted(n for n in registry if n.endswith("_eval")):
        rows = read_jsonl(ROOT / registry[name]["file_name"])
        kinds = Counter((measure_of(r), r.get("task", "qa") == "correction") for r in rows)
        counts = [len(rows), sum(bool(r.get("taught_question")) for r in rows), kinds["reworded", False],
                  kinds["unanswerable", False], kinds["unanswerable", True], kinds["general", False]]
        assert sum(kinds.values()) == sum(counts[2:]), f"{name}: a measures/task pair the table has no column for: {kinds}"
        lines.append(f"| `{name}` | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


def test_format_md_says_what_each_eval_set_measures():
    text = FORMAT_MD.read_text(encoding="utf-8")
    block = re.search(r"<!-- MEASURES:START -->\n(.*?)\n<!-- MEASURES:END -->", text, re.S)
    assert block, f"{FORMAT_MD}: no MEASURES block"
    assert block.group(1) == measures_table(), f"{FORMAT_MD}: the measures table is stale; paste:\n{measures_table()}"

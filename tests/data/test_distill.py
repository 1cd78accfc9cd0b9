"""Document distillation against real OpenAI-compatible servers on loopback: the scripted teacher, and
(slow) `llamafactory-cli api` serving the tiny model."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT, requests

from vslm.data.distill import (
    Options,
    RequestCache,
    carries_fact,
    chunk_facts,
    distill,
    parse_list,
    parse_score,
    quantities,
    question_count,
    rule_filter,
    similarity,
    summary_line,
    unsupported_quantities,
)
from vslm.data.documents import chunk_text
from vslm.core.jsonio import read_jsonl
from vslm.serve.servers import free_port
from vslm.core.endpoint import EndpointConfig, read_env_file
from vslm.core.errors import EndpointError
from vslm.data.distill import teacher_from_env

RULES = (ROOT / "datasets" / "finance" / "reimbursement_rules.md").read_text(encoding="utf-8")
BODY = "\n".join(l for l in RULES.splitlines() if not l.startswith("#") and l.strip())  # no headings: size-driven chunks
FAST = {"timeout": 5, "backoff": (0.05, 0.2), "cooldown": 0.3}
PLANTED = "sk-PLANTED-123"


@pytest.fixture
def scripted(scripted_server):
    """A scripted teacher: answers the distillation prompts."""

    def start(**script):
        script.setdefault("teacher", True)
        script.setdefault("models", ["teacher"])
        return scripted_server(**script)

    return start


def docs(tmp_path: Path, chars: int = 1800) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    (folder / "rules.md").write_text(BODY[:chars], encoding="utf-8")
    (folder / "extra.txt").write_text(BODY[3000:3000 + chars // 2], encoding="utf-8")
    return folder


def run(server, tmp_path: Path, keys=("sk-test",), work="work", opts=None, **kw) -> dict:
    config = EndpointConfig(server.base_url, "teacher", list(keys))
    return distill(kw.pop("source", None) or docs(tmp_path), "dist", config, options=opts or Options(size=600, overlap=100),
                   work_dir=tmp_path / work, out_dir=tmp_path / "ds", registry_path=tmp_path / "dataset_info.json",
                   teacher_kw={**FAST, **kw.pop("teacher_kw", {})}, **kw)


def adds_up(s: dict) -> bool:
    return s["questions"] == s["kept"] + sum(s["filtered"].values()) + sum(s["failed"].values())


def stage_of(user: str) -> str:
    return {"出题": "questions", "作答": "answer", "评分": "judge", "改写": "paraphrase"}[re.search(r"任务：(\S+)", user)[1]]


def identity(user: str) -> tuple[str, str, str]:
    """(stage, source#chunk, question) of a logged teacher request."""
    where = re.search(r"来源：(.+?)，片段 (\d+)", user)
    question = re.search(r"【问题】[^\n]*\n(.*?)(?=\n\n【|\Z)", user, re.S)
    return stage_of(user), f"{where[1]}#{where[2]}", question[1].strip() if question else ""


# --- a normal run ---------------------------------------------------------------------------------

def test_normal_run_writes_provenance_and_registers_the_dataset(scripted, tmp_path):
    server = scripted()
    s = run(server, tmp_path, opts=Options(size=600, overlap=100, paraphrases=2, judge=4))
    assert s["chunks"] >= 4 and s["chunk_failures"] == {} and s["failed"] == {}
    assert s["kept"] > 0 and adds_up(s), s
    assert s["rows"] == s["kept"] + s["paraphrases"] and s["paraphrases"] == 2 * s["kept"]
    registry = json.loads((tmp_path / "dataset_info.json").read_text())
    assert registry == {"dist_train": {"file_name": "ds/dist_train.jsonl", "formatting": "alpaca",
                                       "columns": {"prompt": "instruction", "query": "input", "response": "output"}}}
    rows = [json.loads(l) for l in (tmp_path / "ds" / "dist_train.jsonl").read_text().splitlines()]
    assert len(rows) == s["rows"]
    assert all(r["source"] in ("rules.md", "extra.txt") and isinstance(r["chunk_id"], int) and r["teacher"] == "teacher" for r in rows)
    assert all(50 <= len(r["output"]) <= 500 and chunk_facts(r["output"]) & chunk_facts(BODY) for r in rows)
    distilled = [json.loads(l) for l in Path(s["distilled"]).read_text().splitlines()]
    assert {r["fact"] for r in distilled if "paraphrase_of" in r} <= {r["fact"] for r in distilled if "paraphrase_of" not in r}
    questions = [r["instruction"] for r in distilled if "paraphrase_of" not in r]
    assert all(similarity(a, b) < 0.8 for i, a in enumerate(questions) for b in questions[i + 1:])
    assert json.loads((tmp_path / "work" / "summary.json").read_text())["kept"] == s["kept"]
    assert "kept" in summary_line(s) and "filtered" in summary_line(s)
    # a second run asks nothing: every request is in the cache
    before = len(requests(server))
    again = run(server, tmp_path, opts=Options(size=600, overlap=100, paraphrases=2, judge=4))
    assert len(requests(server)) == before and again["requests"]["sent"] == 0
    assert {k: again[k] for k in ("kept", "rows", "filtered")} == {k: s[k] for k in ("kept", "rows", "filtered")}


def test_429_500_and_timeouts_are_retried(scripted, tmp_path):
    reference = run(scripted(), tmp_path, work="ref")
    server = scripted(statuses=["hang", 429, 500, 500])
    s = run(server, tmp_path, teacher_kw={"timeout": 1})
    assert s["failed"] == {} and s["chunk_failures"] == {}
    assert s["kept"] == reference["kept"] and s["rows"] == reference["rows"]
    assert s["requests"]["sent"] == reference["requests"]["sent"] + 4 == len(requests(server))


def test_malformed_teacher_output_is_counted_not_a_crash(scripted, tmp_path, capsys):
    source = docs(tmp_path)
    chunks = chunk_text(BODY[:1800], 600, 100)
    server = scripted(malformed_keys=[chunks[1].text[150:180]], bad_json_keys=[chunks[3].text[150:180]])  # outside overlaps
    s = run(server, tmp_path, source=source)
    assert s["chunk_failures"] == {"request_failed": 1, "unparseable": 1}, s
    assert s["kept"] > 0 and adds_up(s) and s["dataset"]
    assert any("rules.md#1" in e and "unreadable response" in e for e in s["errors"]), s["errors"]
    assert any("rules.md#3" in e and "not a JSON list" in e for e in s["errors"]), s["errors"]
    # every judge answer unusable: all filtered, nothing registered, no exception
    judged = run(scripted(bad_json_keys=["任务：评分"]), tmp_path, work="judged", opts=Options(size=600, overlap=100, judge=4))
    assert judged["kept"] == 0 and judged["filtered"]["judge_unparseable"] > 0 and adds_up(judged)
    assert judged["dataset"] == {} and "kept 0" in summary_line(judged)


def test_cli_reports_counts_and_fails_cleanly_when_nothing_is_kept(scripted, tmp_path, capsys, monkeypatch):
    from vslm.cli import main

    server = scripted(default="不清楚。", teacher=False, answers={"任务：出题": '["住宿费标准是多少？", "伙食补助每天多少元？"]'})
    monkeypatch.setenv("VSLM_TEACHER_BASE_URL", server.base_url)
    monkeypatch.setenv("VSLM_TEACHER_MODEL", "teacher")
    monkeypatch.setenv("VSLM_TEACHER_API_KEYS", "sk-a,sk-b")
    code = main(["distill", str(docs(tmp_path)), "--name", "nothing", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "ds"),
                 "--size", "600", "--overlap", "100"])
    out, err = capsys.readouterr()
    assert code == 1
    assert re.search(r"(\d+) questions: kept 0, filtered \1 \(too_short \1\), failed 0", out), out
    assert err.strip().splitlines()[-1] == "error: no question-answer pair passed the filters; nothing was registered (see the counts above)"


# --- keys -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 401])
def test_key_rotation_rests_the_failing_key_and_finishes_on_the_other(scripted, tmp_path, status):
    key_a, key_b = "sk-KEYA-aaa", "sk-KEYB-bbb"
    server = scripted(key_statuses={"KEYA": status})
    s = run(server, tmp_path, keys=(key_a, key_b), concurrency=4, teacher_kw={"cooldown": 60})
    assert s["failed"] == {} and s["chunk_failures"] == {} and s["kept"] > 0
    auth = {key_a: hashlib.sha256(key_a.encode()).hexdigest()[:12], key_b: hashlib.sha256(key_b.encode()).hexdigest()[:12]}
    log = requests(server)
    on_a = [r for r in log if r["auth"] == auth[key_a]]
    assert 1 <= len(on_a) <= 4, "A is tried at most once per concurrent slot, then rests"
    assert len(log) == s["requests"]["sent"] and all(r["auth"] in auth.values() for r in log)
    assert s["keys"]["key#1"]["failures"] == len(on_a) and s["keys"]["key#1"]["rests"] >= 1
    assert s["keys"]["key#2"]["failures"] == 0


def test_every_key_rejected_fails_fast_with_a_clear_message(scripted, tmp_path):
    server = scripted(key_statuses={"KEY": 401})
    start = time.monotonic()
    s = run(server, tmp_path, keys=("sk-KEY-1", "sk-KEY-2"), teacher_kw={"cooldown": 600})
    assert time.monotonic() - start < 20 and s["kept"] == 0 and s["chunk_failures"] == {"request_failed": s["chunks"]}
    assert any("every API key was rejected" in e for e in s["errors"])


def test_planted_key_is_never_written_or_logged(scripted, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    good = scripted(key_statuses={"PLANTED": 429})  # the planted key fails: error paths must not print it either
    s = run(good, tmp_path, keys=(PLANTED, "sk-other"), work="w1", opts=Options(size=600, overlap=100, paraphrases=1, judge=3))
    assert s["kept"] > 0
    bad = scripted(key_statuses={"PLANTED": 401}, fail_keys=["任务：作答"], malformed_keys=["任务：改写"])
    run(bad, tmp_path, keys=(PLANTED, "sk-other"), work="w2", opts=Options(size=600, overlap=100, paraphrases=1),
        teacher_kw={"attempts": 2})
    with pytest.raises(EndpointError) as unreachable:
        run(type("S", (), {"base_url": f"http://127.0.0.1:{free_port()}/v1"})(), tmp_path, keys=(PLANTED,), work="w3")
    assert PLANTED not in str(unreachable.value) and PLANTED not in repr(EndpointConfig("u", "m", [PLANTED]))
    # the CLI in a subprocess with the openai client's debug logging on, key from the environment
    env = {**os.environ, "VSLM_TEACHER_BASE_URL": bad.base_url, "VSLM_TEACHER_MODEL": "teacher",
           "VSLM_TEACHER_API_KEYS": PLANTED, "OPENAI_LOG": "debug"}
    proc = subprocess.run([sys.executable, "-m", "vslm.cli", "distill", str(docs(tmp_path)), "--name", "leak", "--work",
                           str(tmp_path / "w4"), "--out", str(tmp_path / "ds4"), "--size", "600", "--overlap", "100"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "every API key was rejected" in proc.stderr, (proc.returncode, proc.stdout[-1000:], proc.stderr[-3000:])
    out, err = capsys.readouterr()
    captured = [out, err, proc.stdout, proc.stderr, caplog.text, *(r.getMessage() for r in caplog.records)]
    assert all(PLANTED not in text for text in captured)
    written = [p for base in (tmp_path, ROOT / "saves" / "distill") if base.exists() for p in base.rglob("*") if p.is_file()]
    assert len(written) > 10
    assert [p for p in written if PLANTED.encode() in p.read_bytes()] == []


def test_teacher_settings_come_from_the_environment_or_dotenv(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text('# teacher\nexport VSLM_TEACHER_BASE_URL="http://127.0.0.1:9/v1/"\nVSLM_TEACHER_MODEL=qwen-max  # comment\n'
                        "VSLM_TEACHER_API_KEYS=sk-1, sk-2\n", encoding="utf-8")
    for name in ("VSLM_TEACHER_BASE_URL", "VSLM_TEACHER_MODEL", "VSLM_TEACHER_API_KEYS", "VSLM_TEACHER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert read_env_file(env_file)["VSLM_TEACHER_MODEL"] == "qwen-max"
    cfg = teacher_from_env(env_file=env_file)
    assert (cfg.base_url, cfg.model, cfg.keys) == ("http://127.0.0.1:9/v1", "qwen-max", ["sk-1", "sk-2"])
    monkeypatch.setenv("VSLM_TEACHER_MODEL", "from-env")
    assert teacher_from_env(env_file=env_file).model == "from-env", "the environment wins over .env"
    with pytest.raises(EndpointError, match="set VSLM_TEACHER_BASE_URL and VSLM_TEACHER_MODEL"):
        monkeypatch.delenv("VSLM_TEACHER_MODEL")
        teacher_from_env(env_file=None)


# --- resume -----------------------------------------------------------------------------------------

def test_killed_run_resumes_without_re_asking_and_completes(scripted, tmp_path):
    server = scripted(latency_ms=120)
    source = docs(tmp_path)
    opts = "Options(size=600, overlap=100, paraphrases=1)"
    reference = run(server, tmp_path, source=source, work="ref", opts=Options(size=600, overlap=100, paraphrases=1))
    reference_rows = (tmp_path / "ds" / "dist_train.jsonl").read_text()
    cache = tmp_path / "work" / "cache.jsonl"
    code = (f"from pathlib import Path; from vslm.data.distill import Options, distill; from vslm.core.endpoint import EndpointConfig; "
            f"distill(Path({str(source)!r}), 'dist', EndpointConfig({server.base_url!r}, 'teacher', ['sk-x']), options={opts}, "
            f"concurrency=2, work_dir=Path({str(tmp_path / 'work')!r}), out_dir=Path({str(tmp_path / 'ds2')!r}), "
            f"registry_path=Path({str(tmp_path / 'reg2.json')!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not cache.exists() or cache.read_text().count('"id": "answer:') < 4):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with cache.open("a") as handle:
        handle.write('{"key": "torn')  # as if killed mid-write
    finished = [json.loads(l)["id"] for l in cache.read_text().splitlines()[:-1]]
    assert sum(i.startswith("answer:") for i in finished) >= 4 and len(finished) < reference["requests"]["sent"], "killed halfway"
    before = len(requests(server))
    resumed = run(server, tmp_path, source=source, opts=Options(size=600, overlap=100, paraphrases=1))
    asked_again = [identity(r["user"]) for r in requests(server)[before:]]
    done = {tuple(i.split(":", 2)) for i in finished}
    assert asked_again and not set(asked_again) & done, "nothing finished is requested again"
    assert resumed["requests"]["from_cache"] == len(finished) == len(done)
    assert (tmp_path / "ds" / "dist_train.jsonl").read_text() == reference_rows, "the resumed dataset is complete"
    assert all(json.loads(l) for l in cache.read_text().splitlines()), "the torn line was cut, later lines are whole"


def test_request_cache_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"key": "a", "id": "x", "model": "m", "answer": "1"}\n{"key": "b", "id"', encoding="utf-8")
    cache = RequestCache(path)
    cache.add("c", "y", "m", "2")
    assert RequestCache(path).done == {"a": "1", "c": "2"}


# --- chunking, filters, parsing -------------------------------------------------------------------

def test_distill_uses_the_configured_size_and_overlap(scripted, tmp_path):
    server = scripted()
    text = "".join(f"第{i}条规定，差旅人员第{i}类事项的报销上限为{i * 37 % 900 + 100}元，超出部分由个人承担。" for i in range(1, 60))
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "r.md").write_text(text, encoding="utf-8")
    s = run(server, tmp_path, source=tmp_path / "one", opts=Options(size=300, overlap=60, questions=1))
    materials = [re.search(r"【资料】[^\n]*\n(.*)", r["user"], re.S)[1] for r in requests(server) if stage_of(r["user"]) == "questions"]
    expected = chunk_text(text, 300, 60)
    assert (s["chunk_size"], s["chunk_overlap"], s["chunks"]) == (300, 60, len(expected))
    assert sorted(materials) == sorted(c.text for c in expected)
    ordered = [c.text for c in expected]
    assert all(len(m) <= 300 and m.endswith("。") for m in ordered), "Chinese chunks end on sentence boundaries"
    for prev, nxt in zip(ordered, ordered[1:]):
        shared = next(k for k in range(min(len(prev), len(nxt)), -1, -1) if prev.endswith(nxt[:k]))
        assert 0 < shared <= 60, "each chunk starts with the tail of the previous one"
    assert (Options().size, Options().overlap, Options().questions) == (2000, 200, 3)


def test_question_count_scales_with_chunk_length():
    assert [question_count(n, 2000, 3) for n in (100, 700, 1400, 2000)] == [1, 2, 3, 3]


def test_rule_filter_follows_the_guide():
    chunk = "第十四条 伙食补助费按出差天数包干发放，标准为每人每天100元；赴西藏出差的，标准为每人每天120元。"
    good = "伙食补助费按出差天数包干发放，标准为每人每天100元；赴西藏出差的标准更高，为每人每天120元，不需要餐饮发票。"
    assert rule_filter(good, chunk, 50, 500) is None
    assert rule_filter("每天100元。", chunk, 50, 500) == "too_short"
    assert rule_filter(good * 10, chunk, 50, 500) == "too_long"
    assert rule_filter(good + "其余情况不清楚。", chunk, 50, 500) == "refusal"
    assert rule_filter(good.replace("100", "两百").replace("120", "三百"), chunk, 50, 500) == "no_chunk_fact"
    assert {"100", "120"} <= chunk_facts(chunk)


def test_meta_questions_and_near_duplicates_are_dropped(scripted, tmp_path):
    questions = ["本文主要讲了什么？", "这段文字规定了哪些内容？", "伙食补助费每人每天的标准是多少元？",
                 "伙食补助费每人每天的标准是多少元呢？", "赴西藏出差的伙食补助标准是多少？"]
    assert similarity(questions[2], questions[3]) >= 0.8 > similarity(questions[2], questions[4])
    answer = "伙食补助费按出差天数包干发放，标准为每人每天100元；赴西藏、青海、新疆出差的，标准为每人每天120元。"
    server = scripted(teacher=False, answers={"任务：出题": json.dumps(questions, ensure_ascii=False)}, default=answer)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "r.md").write_text(BODY[:1990], encoding="utf-8")
    s = run(server, tmp_path, source=tmp_path / "one", opts=Options(size=2000, overlap=200, questions=5))
    assert s["chunks"] == 1 and s["filtered"] == {"meta_question": 2, "duplicate_question": 1} and s["kept"] == 2


def test_parsing_teacher_output():
    assert parse_list('好的：\n```json\n["甲是什么？", "乙是多少？"]\n```') == ["甲是什么？", "乙是多少？"]
    assert parse_list("1. 住宿费标准是多少？\n2、伙食补助怎么算？\n说明文字") == ["住宿费标准是多少？", "伙食补助怎么算？"]
    assert parse_list("no questions here") is None
    assert parse_score('{"score": 4, "reason": "ok"}') == 4 and parse_score("score: 4") is None and parse_score('{"score": 9}') is None


# --- the real thing: llamafactory-cli api serving the tiny model ----------------------------------

@pytest.mark.slow
def test_distill_against_llamafactory_api_survives_noise(tiny_qwen2, tmp_path):
    from vslm.serve.servers import llamafactory_api

    text = "# 东岚大学差旅细则\n\n" + BODY[1200:2100]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "rules.md").write_text(text, encoding="utf-8")
    opts = Options(size=600, overlap=100, questions=2, paraphrases=1, judge=3, max_tokens=48)
    assert len(chunk_text(text, 600, 100)) == 2 and all(question_count(len(c.text), 600, 2) == 2 for c in chunk_text(text, 600, 100))
    server = llamafactory_api(ROOT / "recipes" / "telecom_r32_infer.yaml",
                              ["model_name_or_path=" + str(tiny_qwen2), "adapter_name_or_path=null"], free_port(),
                              tmp_path / "api.log", name="tiny-teacher")
    with server.start(timeout=180):
        s = distill(tmp_path / "one", "tinydist", EndpointConfig(server.base_url, "tiny-teacher", ["EMPTY"]), options=opts,
                    concurrency=2, work_dir=tmp_path / "work", out_dir=tmp_path / "ds", registry_path=tmp_path / "reg.json",
                    teacher_kw={"timeout": 120})
    print(summary_line(s))
    assert s["chunks"] == 2 and s["questions"] <= 4 and adds_up(s), s
    assert s["requests"]["sent"] >= 2 and s["failed"] == {}, "the server answered; only the content is unusable"
    dropped = sum(s["filtered"].values()) + sum(s["chunk_failures"].values())
    assert dropped > 0 and s["rows"] == s["kept"] + s["paraphrases"], "the tiny model's noise is dropped, and counted"
    assert json.loads((tmp_path / "work" / "summary.json").read_text())["questions"] == s["questions"]


# --- grounding: every number of an answer is in its chunk ------------------------------------------

FTTR = next(r["output"] for r in read_jsonl(ROOT / "datasets" / "telecom" / "telecom_train.jsonl") if "Fiber To The Room" in r["output"])


def test_an_invented_number_is_dropped_even_when_the_answer_names_a_chunk_term():
    invented = "FTTR的相关标准为每月9999元，须在777小时内办理；FTTR把光纤从主光猫延伸到各个房间，在房间内安装从光猫发射WiFi。"
    assert "FTTR" in FTTR and "9999" not in FTTR and carries_fact(invented, FTTR), "the old rule let it through"
    assert rule_filter(invented, FTTR, 20, 500) == "unsupported_number"
    assert unsupported_quantities(invented, FTTR) == ["9999元", "777小时"]
    chunk = "第十四条 伙食补助费按出差天数包干发放，标准为每人每天100元；单笔1,000元及以上须转账，须在三十日内报销。"
    written_otherwise = {"１００元": [], "1000元": [], "１，０００元": [], "30天": [], "第14条": [], "1. 每天100元；2. 转账": [],
                         "100天": ["100天"], "每天120元": ["120元"], "1001元": ["1001元"]}
    assert {text: unsupported_quantities(text, chunk) for text in written_otherwise} == written_otherwise
    table = "| 会议类别 | 综合定额（元/人·天） |\n| 一类会议 | 800 |"
    assert unsupported_quantities("一类会议的综合定额是每人每天800元。", table) == [], "a bare table number may carry its unit"


def derivable(value: Decimal, numbers: set[Decimal]) -> bool:
    """value = a op b (op c) for numbers written in the question or answer (a worked example's arithmetic)."""
    numbers = numbers | {n / 100 for n in numbers}  # 60% = 0.6
    ops = lambda a, b: {a + b, a - b, b - a, a * b} | ({a / b} if b else set())
    two = {r for a in numbers for b in numbers for r in ops(a, b)}
    return value in two or any(value in ops(r, c) for r in two for c in numbers)


def test_the_shipped_finance_answers_pass_the_grounding_rule():
    """Every finance_train answer against its source, reimbursement_rules.md: the ones the rule drops repeat a
    number the question gave (a scenario: "I stayed 3 nights at 600元") or work one out (550×3=1650元)."""
    rows = read_jsonl(ROOT / "datasets" / "finance" / "finance_train.jsonl")
    passed, scenario, worked_out = 0, 0, 0
    for row in rows:
        assert carries_fact(row["output"], RULES), row["output"]
        missing = unsupported_quantities(row["output"], RULES)
        if not missing:
            passed += 1
            continue
        asked = {v for v, _, _ in quantities(row["instruction"])}
        written = asked | {v for v, _, _ in quantities(row["output"])}
        values = [quantities(m)[0][0] for m in missing]
        assert all(v in asked or derivable(v, written - {v}) for v in values), (row["instruction"], missing)
        scenario += all(v in asked for v in values)
        worked_out += not all(v in asked for v in values)
    print(f"finance_train: {passed} of {len(rows)} answers pass; {scenario} repeat the question's numbers, {worked_out} compute")
    assert passed + scenario + worked_out == len(rows) and passed >= 0.85 * len(rows)


def test_dropped_items_are_listed_with_their_reason(scripted, tmp_path, capsys, monkeypatch):
    from vslm.cli import main

    questions = ["伙食补助费每人每天的标准是多少元？", "FTTR的收费标准是什么？"]
    grounded = "伙食补助费按出差天数包干发放，标准为每人每天100元；赴西藏、青海、新疆出差的，标准为每人每天120元。"
    invented = "FTTR的收费标准为每月9999元，须在777小时内办理；伙食补助费按出差天数包干发放，标准为每人每天100元。"
    server = scripted(teacher=False, answers={"任务：出题": json.dumps(questions, ensure_ascii=False), "FTTR的收费": invented},
                      default=grounded)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "r.md").write_text(BODY[1200:1700], encoding="utf-8")
    monkeypatch.setattr("vslm.data.convert.DATASET_INFO", tmp_path / "dataset_info.json")
    for name, value in (("BASE_URL", server.base_url), ("MODEL", "teacher"), ("API_KEYS", "sk-a")):
        monkeypatch.setenv(f"VSLM_TEACHER_{name}", value)
    code = main(["distill", str(tmp_path / "one"), "--name", "grounded", "--work", str(tmp_path / "w"), "--out",
                 str(tmp_path / "ds"), "--size", "520", "--overlap", "100", "--questions", "2"])  # one chunk, two questions
    out, err = capsys.readouterr()
    assert code == 0, err
    dropped = read_jsonl(tmp_path / "w" / "dropped.jsonl")
    assert [{k: d[k] for k in ("question", "reason", "unsupported")} for d in dropped] == [
        {"question": "FTTR的收费标准是什么？", "reason": "unsupported_number", "unsupported": ["9999元", "777小时"]}]
    assert dropped[0]["answer"] == invented and dropped[0]["source"] == "r.md"
    assert f"dropped 1 (each with its reason in {tmp_path / 'w' / 'dropped.jsonl'})" in out
    assert "  r.md#0 unsupported_number (9999元, 777小时 not in the chunk): FTTR的收费标准是什么？" in out
    assert read_jsonl(tmp_path / "ds" / "grounded_train.jsonl")[0]["output"] == grounded


def test_unreadable_documents_are_skipped_and_named_in_the_summary(scripted, tmp_path, capsys, monkeypatch):
    from test_documents import scan_pdf

    from vslm.cli import main

    source = docs(tmp_path)
    scan_pdf(source / "scanned.pdf")
    (source / "broken.docx").write_bytes(b"PK\x03\x04 not a zip")
    s = run(scripted(), tmp_path, source=source)
    assert s["documents"] == 2 and s["kept"] > 0
    assert [x.split(":")[0] for x in s["skipped"]] == [str(source / "broken.docx"), str(source / "scanned.pdf")]
    assert "no text even after OCR (rapidocr)" in s["skipped"][1]
    assert json.loads((tmp_path / "work" / "summary.json").read_text())["skipped"] == s["skipped"]
    monkeypatch.setattr("vslm.data.convert.DATASET_INFO", tmp_path / "dataset_info.json")
    for name, value in (("BASE_URL", scripted().base_url), ("MODEL", "teacher"), ("API_KEYS", "sk-a")):
        monkeypatch.setenv(f"VSLM_TEACHER_{name}", value)
    assert main(["distill", str(source), "--name", "skips", "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "ds2"),
                 "--size", "600", "--overlap", "100"]) == 0
    err = capsys.readouterr().err
    assert f"  skipped {source / 'broken.docx'}: cannot read this DOCX" in err and f"  skipped {source / 'scanned.pdf'}:" in err


# --- teacher faults ---------------------------------------------------------------------------------

def test_a_wrong_model_name_fails_at_start_naming_what_is_served(scripted, tmp_path):
    server = scripted(models=["qwen-max", "qwen-plus"])
    config = EndpointConfig(server.base_url, "qwen-mx", ["sk-a"])
    with pytest.raises(EndpointError) as err:
        distill(docs(tmp_path), "dist", config, options=Options(size=600, overlap=100), work_dir=tmp_path / "w",
                out_dir=tmp_path / "ds", registry_path=tmp_path / "r.json", teacher_kw=FAST)
    assert str(err.value) == (f"teacher model `qwen-mx` is not served at {server.base_url}; it serves: qwen-max, qwen-plus "
                              "(did you mean `qwen-max`?) — set VSLM_TEACHER_MODEL or --model (--any-model skips this check)")
    assert requests(server) == [], "nothing was asked"
    unchecked = distill(docs(tmp_path), "dist", config, options=Options(size=600, overlap=100), work_dir=tmp_path / "w",
                        out_dir=tmp_path / "ds", registry_path=tmp_path / "r.json", teacher_kw={**FAST, "strict_model": False})
    assert unchecked["kept"] == 0 and any("HTTP 404" in e for e in unchecked["errors"]), "--any-model: the requests tell"


@pytest.mark.parametrize("shape", ["html", "list"])
def test_models_lists_that_are_html_or_a_bare_list_do_not_break_the_start(scripted, tmp_path, shape):
    server = scripted(models_body=shape)
    s = run(server, tmp_path)
    assert s["kept"] > 0 and s["failed"] == {}
    if shape == "list":  # readable: a wrong name is still caught
        with pytest.raises(EndpointError, match="teacher model `nope` is not served .* it serves: teacher"):
            distill(docs(tmp_path), "dist", EndpointConfig(server.base_url, "nope", ["sk-a"]), work_dir=tmp_path / "w2",
                    out_dir=tmp_path / "ds2", registry_path=tmp_path / "r2.json", teacher_kw=FAST)


def test_retry_after_is_honoured_and_the_wait_is_shown(scripted, tmp_path, capsys):
    server = scripted(statuses=[429], retry_after="1")
    start = time.monotonic()
    s = run(server, tmp_path, concurrency=1, teacher_kw={"cooldown": 120})
    assert time.monotonic() - start < 30 and s["failed"] == {} and s["chunk_failures"] == {}
    assert s["keys"]["key#1"] == {"requests": s["requests"]["sent"], "failures": 1, "rests": 1}
    assert "teacher: HTTP 429 with key#1; it rests 1 s (Retry-After)" in capsys.readouterr().err


def test_retry_after_forms_and_cap():
    from email.utils import format_datetime

    from vslm.core.endpoint import MAX_RETRY_AFTER, KeyPool, retry_after

    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    assert retry_after({"retry-after": "1"}) == 1 and 17 < retry_after({"retry-after": later}) <= 20
    assert retry_after({"retry-after-ms": "250"}) == 0.25 and retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
    shown = []
    pool = KeyPool(["k"], cooldown=30, notify=shown.append)
    pool.failed(0, 429, 10**6)
    assert MAX_RETRY_AFTER - 1 < pool.states[0].resting_until - time.monotonic() <= MAX_RETRY_AFTER
    pool.failed(0, 429, 1)
    assert len(shown) == 1, "one line per rest, not per request that meets it"


def test_a_200_that_is_not_json_is_retried(scripted, tmp_path):
    reference = run(scripted(), tmp_path, work="ref")
    server = scripted(statuses=["malformed", "html"])
    s = run(server, tmp_path, concurrency=1)
    assert s["failed"] == {} and s["chunk_failures"] == {} and s["kept"] == reference["kept"]
    assert s["requests"]["sent"] == reference["requests"]["sent"] + 2


def test_an_unparseable_question_list_is_asked_again_next_run(scripted, tmp_path):
    chunks = chunk_text(BODY[:1800], 600, 100)
    bad = scripted(bad_json_keys=[chunks[2].text[150:180]])
    first = run(bad, tmp_path)
    assert first["chunk_failures"] == {"unparseable": 1}
    good = scripted()
    second = run(good, tmp_path, replace=True)  # the dataset grows: a new version
    asked = [identity(r["user"]) for r in requests(good)]
    assert second["chunk_failures"] == {} and second["kept"] > first["kept"]
    assert ("questions", "rules.md#2", "") in asked and {a[1] for a in asked} == {"rules.md#2"}, "only that chunk is asked"


def test_every_prompt_parameter_is_in_the_cache_key(scripted, tmp_path):
    server = scripted()
    run(server, tmp_path, opts=Options(size=600, overlap=100, max_len=500))
    before = len(requests(server))
    again = run(server, tmp_path, opts=Options(size=600, overlap=100, max_len=400))
    stages = Counter(identity(r["user"])[0] for r in requests(server)[before:])
    assert stages["answer"] > 0 and stages["questions"] == 0, "a new --max-len asks for new answers, not new questions"
    assert again["requests"]["from_cache"] == again["chunks"]


# --- the command line: bad flags, Ctrl-C, --timeout/--attempts/--cooldown ---------------------------

@pytest.mark.parametrize(("flags", "code", "says"), [
    (["--size", "0"], 2, "argument --size: 0 is not allowed"), (["--overlap", "-1"], 2, "argument --overlap: -1 is not allowed"),
    (["--concurrency", "0"], 2, "argument --concurrency: 0 is not allowed"), (["--concurrency", "-3"], 2, "argument --concurrency"),
    (["--attempts", "0"], 2, "argument --attempts"), (["--timeout", "abc"], 2, "argument --timeout"),
    (["--cooldown", "-1"], 2, "argument --cooldown"), (["--questions", "0"], 2, "argument --questions"),
    (["--size", "200", "--overlap", "300"], 1, "error: --overlap (300) must be smaller than --size (200)"),
    (["--min-len", "80", "--max-len", "60"], 1, "error: --max-len must be at least --min-len and 1 (got 60)"),
    (["--timeout", "0"], 1, "error: --timeout must be more than 0 (got 0)"),
])
def test_bad_flags_are_one_line_and_ask_nothing(scripted, tmp_path, capsys, monkeypatch, flags, code, says):
    from vslm.cli import main

    server = scripted()
    for name, value in (("BASE_URL", server.base_url), ("MODEL", "teacher"), ("API_KEYS", "sk-a")):
        monkeypatch.setenv(f"VSLM_TEACHER_{name}", value)
    with pytest.raises(SystemExit) if code == 2 else contextlib.nullcontext() as exited:
        result = main(["distill", str(docs(tmp_path)), "--name", "flags", "--work", str(tmp_path / "w"), "--out",
                       str(tmp_path / "ds"), *flags])
    err = capsys.readouterr().err
    assert (exited.value.code if code == 2 else result) == code
    assert len(err.strip().splitlines()) == 1 and says in err, err
    assert requests(server) == []


@pytest.mark.parametrize("flag", ["--out", "--work"])
def test_out_or_work_pointing_at_a_file_is_one_line(scripted, tmp_path, capsys, monkeypatch, flag):
    from vslm.cli import main

    server = scripted()
    for name, value in (("BASE_URL", server.base_url), ("MODEL", "teacher"), ("API_KEYS", "sk-a")):
        monkeypatch.setenv(f"VSLM_TEACHER_{name}", value)
    a_file = tmp_path / "a_file.jsonl"
    a_file.write_text("{}\n")
    paths = {"--out": str(tmp_path / "ds"), "--work": str(tmp_path / "w"), flag: str(a_file)}
    assert main(["distill", str(docs(tmp_path)), "--name", "files", *(x for kv in paths.items() for x in kv)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {flag} {a_file} is a file; give a folder" + err[0].split("give a folder", 1)[1]]
    assert requests(server) == [] and a_file.read_text() == "{}\n"


def test_ctrl_c_says_where_the_answers_are_and_the_rerun_resumes(scripted, tmp_path):
    server = scripted(latency_ms=1000)  # ~12 s of answers at --concurrency 2: the interrupt after the 4th comes long before the end
    source, work = docs(tmp_path), tmp_path / "w"
    env = {**os.environ, "VSLM_TEACHER_BASE_URL": server.base_url, "VSLM_TEACHER_MODEL": "teacher", "VSLM_TEACHER_API_KEYS": "sk-a"}
    proc = subprocess.Popen([sys.executable, "-m", "vslm.cli", "distill", str(source), "--name", "h13_interrupted", "--work", str(work),
                             "--out", str(tmp_path / "ds"), "--size", "600", "--overlap", "100", "--concurrency", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell without job control starts background jobs with SIGINT ignored, and children inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not (work / "cache.jsonl").exists() or (work / "cache.jsonl").read_text().count("\n") < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"interrupted — finished answers are cached in {work / 'cache.jsonl'}; "
                                            "run the same command again to resume")
    finished = (work / "cache.jsonl").read_text().count("\n")
    resumed = distill(source, "h13_interrupted", EndpointConfig(server.base_url, "teacher", ["sk-a"]), options=Options(size=600, overlap=100),
                      work_dir=work, out_dir=tmp_path / "ds", registry_path=tmp_path / "r.json", teacher_kw=FAST)
    assert resumed["requests"]["from_cache"] == finished >= 4 and resumed["kept"] > 0


def test_timeout_attempts_and_cooldown_come_from_the_command_line(scripted, tmp_path, capsys, monkeypatch):
    from vslm.cli import main

    server = scripted(statuses=["hang", 429])
    monkeypatch.setattr("vslm.data.convert.DATASET_INFO", tmp_path / "dataset_info.json")
    for name, value in (("BASE_URL", server.base_url), ("MODEL", "teacher"), ("API_KEYS", "sk-a")):
        monkeypatch.setenv(f"VSLM_TEACHER_{name}", value)
    start = time.monotonic()
    code = main(["distill", str(docs(tmp_path)), "--name", "flagged", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "ds"),
                 "--size", "600", "--overlap", "100", "--concurrency", "1", "--timeout", "1", "--attempts", "1", "--cooldown", "0.5"])
    out, err = capsys.readouterr()
    assert code == 0 and time.monotonic() - start < 60, err
    assert "timed out with key#1 (gave up after 1 attempts)" in err, err
    assert "teacher: HTTP 429 with key#1; it rests 0.5 s (cool-down, --cooldown 0.5)" in err
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["chunk_failures"] == {"request_failed": 2} and summary["keys"]["key#1"]["failures"] == 2

"""The optional LLM judge against real scripted OpenAI-compatible servers on loopback: one answers as the
evaluated model, one as the judge (its verdict = 1 + 4 x the share of key facts the answer contains)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, requests

from vslm.core.errors import EndpointError
from vslm.eval.evaluate import evaluate
from vslm.eval.judge import RUBRIC, JudgeSpec, judge_from_env, parse_verdict
from vslm.eval.report import write_report
from vslm.core.endpoint import EndpointConfig

PLANTED = "sk-judge-PLANTED-0123456789"
ROWS = [
    {"id": "all", "instruction": "宽带报修电话是多少？", "output": "拨打10086，按3号键。", "key_facts": ["10086", "3号键"], "category": "a"},
    {"id": "half", "instruction": "套餐怎么变更？", "output": "次月生效，可在App办理。", "key_facts": ["次月生效", "App"], "category": "a"},
    {"id": "none", "instruction": "国际漫游怎么开？", "output": "发送KTMY到10086。", "key_facts": ["KTMY"], "category": "b"},
    {"id": "refuse", "instruction": "明天的股价是多少？", "output": "抱歉，这不在我的服务范围内。", "task": "refusal", "category": "b"},
    {"id": "cls", "instruction": "分类：宽带坏了", "output": "故障", "task": "classification", "labels": ["故障", "业务"], "category": "b"},
]
ANSWERS = {"宽带报修": "请拨打10086后按3号键。", "套餐怎么变更": "变更次月生效。", "国际漫游": "请咨询营业厅。",
           "股价": "抱歉，这不在我的服务范围内。", "分类": "故障"}


def judge_prompts(server) -> list[str]:
    return [r["user"] for r in requests(server) if "【待评答案】" in r["user"]]


@pytest.fixture
def model_and_judge(scripted_server):
    return scripted_server(answers=ANSWERS), scripted_server(judge=True, models=["judge-model"])


def spec_of(judge, **kw) -> JudgeSpec:
    return JudgeSpec(EndpointConfig(judge.base_url, "judge-model", [PLANTED], "VSLM_JUDGE"), **kw)


def test_verdicts_are_parsed_strictly():
    assert parse_verdict('好的 {"score": 4, "reason": "漏了期限"} 完') == (4, "漏了期限")
    assert parse_verdict('{"score": "5", "reason": ""}')[0] == 5
    assert parse_verdict('{"score": 6}')[0] is None and parse_verdict('{"score": 3.5}')[0] is None
    assert parse_verdict('{"score": true}')[0] is None and parse_verdict("score: 4")[0] is None
    assert parse_verdict("[1, 2]") == (None, "")


def test_judge_scores_free_text_rows_and_skips_exact_metric_rows(model_and_judge, tmp_path):
    model, judge = model_and_judge
    result = evaluate(ROWS, base_url=model.base_url, model="base", system="sys", cache_path=tmp_path / "a.jsonl",
                      max_tokens=32, judge=spec_of(judge))
    scores = result["scores"]
    assert [scores[i]["judge_score"] for i in ("all", "half", "none", "refuse")] == [5, 3, 1, 5]
    assert "judge_score" not in scores["cls"], "classification has exact metrics; the judge is not asked"
    assert len(judge_prompts(judge)) == 4
    overall, by_cat = result["summary"]["overall"], result["summary"]["by_category"]
    assert overall["judge_score"] == 3.5 and overall["judge_unscored"] == 0
    assert by_cat["a"]["judge_score"] == 4.0 and by_cat["b"]["judge_score"] == 3.0
    prompt = judge_prompts(judge)[0]
    assert "【参考答案】" in prompt and "【关键事实】" in prompt
    system = [json.loads(l) for l in (tmp_path / "a.judge.jsonl").read_text().splitlines()]
    assert len(system) == 4
    assert result["judge"]["model"] == "judge-model" and result["judge"]["rubric"] == "eval/judge_rubric.md"

    files = write_report(tmp_path / "report", title="t", rows=ROWS, results={"base": result, "fine-tuned": result},
                         context={"eval_set": "x", "max_tokens": 32})
    md = files["md"].read_text()
    assert "| LLM-judge score (1–5, rubric) | 3.50 | 3.50 | +0.00 |" in md
    assert "Judge: base" in md and "judged by" in md
    assert "| a | 2 | key-fact recall | 0.750 | 0.750 | +0.000 |" in md
    for path in [*tmp_path.rglob("*.json*"), files["md"], judge.request_log]:
        assert PLANTED not in path.read_text(), f"the judge's API key leaked into {path}"


def test_rubric_is_the_system_prompt(model_and_judge, tmp_path):
    from vslm.eval.judge import judge_messages

    messages = judge_messages(ROWS[0], "答案", RUBRIC.read_text(encoding="utf-8"))
    assert messages[0] == {"role": "system", "content": RUBRIC.read_text(encoding="utf-8")}
    assert "5 分" in messages[0]["content"] and "拒答" in messages[0]["content"]


def test_failing_judge_keeps_finished_verdicts_and_resume_asks_only_the_rest(scripted_server, tmp_path):
    model = scripted_server(answers=ANSWERS)
    bad_judge = scripted_server(judge=True, models=["judge-model"], fail_keys=["国际漫游"])
    cache = tmp_path / "a.jsonl"
    with pytest.raises(EndpointError, match=r"1 of 4 judge requests to .* failed \(HTTP 500 with key#1.*\); 3 finished verdicts are kept"):
        evaluate(ROWS, base_url=model.base_url, model="base", system=None, cache_path=cache, max_tokens=32,
                 judge=JudgeSpec(EndpointConfig(bad_judge.base_url, "judge-model", [PLANTED], "VSLM_JUDGE"), concurrency=2))
    assert len((tmp_path / "a.judge.jsonl").read_text().splitlines()) == 3
    good_judge = scripted_server(judge=True, models=["judge-model"])
    asked_before = len(requests(model))
    result = evaluate(ROWS, base_url=model.base_url, model="base", system=None, cache_path=cache, max_tokens=32, judge=spec_of(good_judge))
    assert result["scores"]["none"]["judge_score"] == 1
    assert len(requests(model)) == asked_before, "answers were cached; none is asked again"
    assert ["国际漫游" in p for p in judge_prompts(good_judge)] == [True], "only the missing verdict is asked"


def test_unreadable_verdicts_are_counted_not_guessed(scripted_server, tmp_path):
    model = scripted_server(answers=ANSWERS)
    judge = scripted_server(judge=True, models=["judge-model"], bad_json_keys=["套餐"])
    result = evaluate(ROWS, base_url=model.base_url, model="base", system=None, cache_path=tmp_path / "a.jsonl",
                      max_tokens=32, judge=spec_of(judge))
    assert result["scores"]["half"]["judge_score"] is None
    assert result["summary"]["overall"]["judge_unscored"] == 1
    assert result["summary"]["overall"]["judge_score"] == round((5 + 1 + 5) / 3, 4)


def test_unreachable_judge_is_a_clear_error(scripted_server, tmp_path):
    from vslm.serve.servers import free_port

    model = scripted_server(answers=ANSWERS)
    spec = JudgeSpec(EndpointConfig(f"http://127.0.0.1:{free_port()}/v1", "judge-model", [PLANTED], "VSLM_JUDGE"))
    with pytest.raises(EndpointError, match=r"cannot reach the judge at http://127\.0\.0\.1:\d+/v1 .*check VSLM_JUDGE_BASE_URL") as err:
        evaluate(ROWS, base_url=model.base_url, model="base", system=None, cache_path=tmp_path / "a.jsonl", max_tokens=32, judge=spec)
    assert PLANTED not in str(err.value)


def test_judge_settings_come_from_env_or_dotenv_with_the_teacher_as_fallback(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("VSLM_JUDGE_", "VSLM_TEACHER_")):
            monkeypatch.delenv(name)
    with pytest.raises(EndpointError, match="set VSLM_JUDGE_BASE_URL and VSLM_JUDGE_MODEL"):
        judge_from_env(env_file=None)
    env_file = tmp_path / ".env"
    env_file.write_text(f"VSLM_TEACHER_BASE_URL=http://t/v1\nVSLM_TEACHER_MODEL=teacher\nVSLM_TEACHER_API_KEY={PLANTED}\n"
                        "VSLM_JUDGE_BASE_URL=\nVSLM_JUDGE_MODEL=  # left empty, as in .env.example\n")
    spec = judge_from_env(env_file=env_file)
    assert (spec.config.model, spec.config.env_prefix) == ("teacher", "VSLM_TEACHER")
    monkeypatch.setenv("VSLM_JUDGE_BASE_URL", "http://j/v1")
    monkeypatch.setenv("VSLM_JUDGE_MODEL", "judge")
    spec = judge_from_env(env_file=env_file)
    assert (spec.config.base_url, spec.config.model, spec.config.keys) == ("http://j/v1", "judge", ["EMPTY"])
    assert PLANTED not in repr(spec) and PLANTED not in json.dumps(spec.record())
    with pytest.raises(EndpointError, match="judge rubric .*missing.md not found"):
        judge_from_env(rubric=tmp_path / "missing.md", env_file=None)


def test_cli_eval_with_judge(model_and_judge, tmp_path):
    model, judge = model_and_judge
    out = tmp_path / "base.json"
    env = {**os.environ, "VSLM_JUDGE_BASE_URL": judge.base_url, "VSLM_JUDGE_MODEL": "judge-model", "VSLM_JUDGE_API_KEYS": PLANTED}
    cmd = [sys.executable, "-m", "vslm", "eval", "telecom_r32", "--base-url", model.base_url, "--model", "base",
           "--limit", "3", "--max-tokens", "16", "--out", str(out), "--judge"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["summary"]["overall"]["judge_score"] is not None and len(judge_prompts(judge)) == 3
    assert PLANTED not in result.stdout + result.stderr + out.read_text()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VSLM_JUDGE_", "VSLM_TEACHER_"))}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: set VSLM_JUDGE_BASE_URL"), result.stderr[-500:]

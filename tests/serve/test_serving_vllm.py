"""A real vLLM CPU server on loopback: base and adapter in one process, structured choice for labels."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import run
from vslm.recipes.resolve import ServeSettings
from vslm.serve.servers import free_port, vllm_python, vllm_server

pytestmark = pytest.mark.slow
VSLM = [sys.executable, "-m", "vslm"]
PYTHON = vllm_python()


@pytest.fixture(scope="session")
def platform_adapter(tiny_qwen3, tmp_path_factory):
    out = tmp_path_factory.mktemp("platform") / "adapter"
    result = run(VSLM + ["train", "platform_classifier", "--profile", "tiny", "max_steps=30", f"output_dir={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def vllm_qwen3(tiny_qwen3, platform_adapter, tmp_path_factory):
    assert PYTHON, "vLLM is not installed: `make test` installs it with scripts/install_vllm.sh"
    server = vllm_server(PYTHON, str(tiny_qwen3), {"platform_classifier": str(platform_adapter)},
                         ServeSettings.cpu(max_model_len=2048, max_lora_rank=16), free_port(),
                         tmp_path_factory.mktemp("vllm") / "vllm.log")
    server.start(timeout=600)
    yield server
    server.stop()
    assert server.proc.poll() is not None


def test_base_and_adapter_are_both_served_and_differ(vllm_qwen3):
    """The adapter is applied per request: the first token's log-probabilities differ between `base` and the adapter
    (compared as numbers, so the test does not depend on which words the tiny model happens to pick)."""
    from openai import OpenAI

    client = OpenAI(base_url=vllm_qwen3.base_url, api_key="EMPTY")
    models = {m.id for m in client.models.list().data}
    assert {"base", "platform_classifier"} <= models

    def first_token_logprobs(model, text) -> dict[str, float]:
        resp = client.chat.completions.create(model=model, temperature=0, max_tokens=1, logprobs=True, top_logprobs=5,
                                              messages=[{"role": "user", "content": text}],
                                              extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        return {t.token: t.logprob for t in resp.choices[0].logprobs.content[0].top_logprobs}

    prompt = "任务: 问题场景分类\n数据清洗流程是什么？"
    base, adapted = first_token_logprobs("base", prompt), first_token_logprobs("platform_classifier", prompt)
    shared = set(base) & set(adapted)
    assert set(base) != set(adapted) or max(abs(base[t] - adapted[t]) for t in shared) > 1e-3, (base, adapted)


def test_classifier_under_structured_choice_yields_only_labels(vllm_qwen3, tmp_path):
    from vslm.eval.evaluate import evaluate, load_eval_rows

    rows = [r for r in load_eval_rows("platform_eval") if r["task"] == "classification"][:16]
    result = evaluate(rows, base_url=vllm_qwen3.base_url, model="platform_classifier", system="你是数据平台的智能助手，按任务要求只输出结果。",
                      cache_path=tmp_path / "c.jsonl", max_tokens=16, structured=True, enable_thinking=False, concurrency=8)
    for row in rows:
        assert result["answers"][row["id"]] in row["labels"]
    report = result["summary"]["classification"]
    assert all(rep["off_label"] == 0 for rep in report.values())


def test_llm_judge_on_vllm_gives_only_valid_structured_verdicts(vllm_qwen3, tmp_path):
    from vslm.eval.evaluate import evaluate, load_eval_rows
    from vslm.eval.judge import JudgeSpec
    from vslm.core.endpoint import EndpointConfig

    rows = load_eval_rows("telecom_eval", 6)
    judge = JudgeSpec(EndpointConfig(vllm_qwen3.base_url, "base", ["EMPTY"], "VSLM_JUDGE"), structured=True, concurrency=6)
    result = evaluate(rows, base_url=vllm_qwen3.base_url, model="platform_classifier", system="你是一名中国移动的专业客服。",
                      cache_path=tmp_path / "a.jsonl", max_tokens=24, enable_thinking=False, judge=judge)
    assert [result["scores"][r["id"]]["judge_score"] in (1, 2, 3, 4, 5) for r in rows] == [True] * len(rows)
    assert result["summary"]["overall"]["judge_unscored"] == 0
    verdicts = [json.loads(l)["answer"] for l in (tmp_path / "a.judge.jsonl").read_text().splitlines()]
    assert all(json.loads(v)["score"] in (1, 2, 3, 4, 5) for v in verdicts), "structured outputs constrain the verdict to compact JSON"

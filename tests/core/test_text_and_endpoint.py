"""The bottom layer's helpers: character n-gram similarity, the /models reader and the retry path of the HTTP stack
(against the scripted OpenAI-compatible server on loopback)."""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import requests

from vslm.core.endpoint import Endpoint, EndpointConfig, RequestFailed, served_models
from vslm.core.text import bigrams, jaccard, trigrams
from vslm.data.datacheck import normalize_prompt
from vslm.eval.metrics import normalize
from vslm.eval.rag import tokens


def test_trigram_jaccard_of_near_copies_from_the_projects_data():
    a = normalize_prompt("光猫亮红灯，无法上网，是什么原因？")
    b = normalize_prompt("光猫亮红灯无法上网是什么原因")
    c = normalize_prompt("宽带套餐怎么办理？")
    assert jaccard(trigrams(a), trigrams(b)) == 1.0, "punctuation does not count"
    assert jaccard(trigrams(a), trigrams(c)) == 0.0
    assert trigrams("ab") == {"ab"}, "a short text is its own gram"
    assert jaccard(set(), set()) == 1.0


def test_bigrams_are_what_retrieval_indexes_after_the_unigrams():
    norm = normalize("报销 时限是 30 天。")
    assert tokens("报销 时限是 30 天。") == list(norm) + bigrams(norm)
    assert bigrams("a") == [] and bigrams("abc") == ["ab", "bc"]


@pytest.mark.parametrize(("body", "strict", "ids"), [
    ({"data": [{"id": "base"}, {"id": "telecom_r32"}]}, True, ["base", "telecom_r32"]),
    ({"data": [{"id": "base"}, {"id": "telecom_r32"}]}, False, ["base", "telecom_r32"]),
    (["qwen-max", "qwen-plus"], False, ["qwen-max", "qwen-plus"]),
    (["qwen-max", "qwen-plus"], True, None),
    ({"data": [{"name": "x"}]}, True, None),
    ({"error": "no"}, False, None),
])
def test_served_models_reads_the_openai_shape_and_leniently_a_bare_list(body, strict, ids):
    assert served_models(body, strict=strict) == ids


def ask(server, question: str, **kw) -> str:
    async def go() -> str:
        endpoint = Endpoint(EndpointConfig(server.base_url, "base", ["sk-test"], "VSLM_JUDGE"), backoff=(0.05, 0.2), **kw)
        try:
            return await endpoint.chat([{"role": "user", "content": question}], max_tokens=8, top_p=1.0)
        finally:
            await endpoint.close()

    return asyncio.run(go())


def test_the_one_retry_path_gets_past_429_and_500_to_the_answer(scripted_server):
    server = scripted_server(statuses=[429, 500, 502], retry_after="0")
    assert ask(server, "光猫亮红灯，无法上网，是什么原因？", attempts=4) == "光猫亮红灯，无法上网，是什么原因？"
    assert len(requests(server)) == 4, "three failures, each asked again, then the answer"


def test_the_retry_path_gives_up_after_its_attempts_with_the_last_reason(scripted_server):
    server = scripted_server(statuses=[500, 429, 500, 500], retry_after="0")
    with pytest.raises(RequestFailed, match=r"^HTTP 500 with key#1 \(gave up after 3 attempts\)$") as failed:
        ask(server, "问题", attempts=3)
    assert failed.value.reason == "HTTP 500" and len(requests(server)) == 3
    assert "sk-test" not in json.dumps(requests(server), ensure_ascii=False) + str(failed.value)


def test_a_client_error_is_not_asked_again(scripted_server):
    server = scripted_server(statuses=[404])
    with pytest.raises(RequestFailed, match=r"^HTTP 404 with key#1$"):
        ask(server, "问题", attempts=4)
    assert len(requests(server)) == 1

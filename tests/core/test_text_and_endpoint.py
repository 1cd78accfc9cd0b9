"""The bottom layer's helpers: character n-gram similarity and the /models reader of the HTTP stack."""

from __future__ import annotations

import pytest

from vslm.core.endpoint import served_models
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

import numpy as np
import pytest

from conftest import ROOT
from vslm.eval.client import prompt_of
from vslm.eval.evaluate import (
    best_constant_answer,
    floor_results,
    load_eval_rows,
    nearest_training_answers,
    read_eval_file,
    taught_rows,
    training_rows,
)
from vslm.recipes.matrix import load_recipes
from vslm.core.errors import DataError
from vslm.eval.metrics import (
    aggregate,
    classification_scores,
    is_refusal,
    key_fact_recall,
    match_label,
    rouge_bleu,
    score_row,
    signals_correction,
)


def test_key_fact_recall_hand_cases():
    assert key_fact_recall("请发送0000到10086退订。", ["0000", "10086", "退订"]) == 1.0
    assert key_fact_recall("请拨打 10086。", ["0000", "10086"]) == 0.5
    assert key_fact_recall("LOS 灯红：光信号中断", ["los灯", "光纤"]) == 0.5  # case and spaces do not matter
    assert key_fact_recall("anything", []) is None


def test_identical_and_disjoint_pairs():
    same = rouge_bleu("光猫亮红灯请检查光纤", "光猫亮红灯请检查光纤")
    assert same["rouge-l"] == pytest.approx(100.0) and same["bleu-4"] == pytest.approx(100.0)
    none = rouge_bleu("abc", "光猫")
    assert none["rouge-l"] == 0.0 and none["bleu-4"] < 5


def test_rouge_bleu_equal_llamafactory_do_predict_on_a_fixed_pair():
    from llamafactory.train.sft.metric import ComputeSimilarity
    from transformers import EvalPrediction

    from vslm.models.tokenizer import build_qwen_tokenizer

    tok = build_qwen_tokenizer("qwen2")
    pred = "您好，光猫LOS灯亮红灯说明光信号中断，请检查入户光纤是否弯折。"
    ref = "您好，LOS灯红灯表示没有收到光信号，建议检查光纤接头并重启光猫。"
    p_ids, r_ids = tok(pred).input_ids, tok(ref).input_ids
    width = max(len(p_ids), len(r_ids))
    pad = lambda ids: ids + [-100] * (width - len(ids))  # noqa: E731
    lf = ComputeSimilarity(tokenizer=tok)(EvalPrediction(predictions=np.array([pad(p_ids)]), label_ids=np.array([pad(r_ids)])))
    ours = rouge_bleu(pred, ref)
    for key in ("rouge-1", "rouge-2", "rouge-l", "bleu-4"):
        assert ours[key] == pytest.approx(lf[key], abs=1e-6), key
    assert 0 < ours["rouge-l"] < 100


def test_classification_accuracy_macro_f1_and_confusion_by_hand():
    labels = ["A", "B", "C"]
    gold = ["A", "A", "B", "C"]
    pred = ["A", "B", "B", None]
    scores = classification_scores(gold, pred, labels)
    assert scores["accuracy"] == 0.5
    # F1: A = 2*1*0.5/1.5 = 0.667, B = 2*0.5*1/1.5 = 0.667, C = 0
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert scores["confusion"]["A"] == {"A": 1, "B": 1} and scores["confusion"]["C"] == {"(none)": 1}
    assert scores["off_label"] == 1


def test_label_matching_and_refusal():
    labels = ["数据平台相关问题", "通用问题", "无关问题"]
    assert match_label("通用问题。", labels) == "通用问题"
    assert match_label("这是无关问题", labels) == "无关问题"
    assert match_label("不确定", labels) is None
    assert is_refusal("关于林澈的血型，我没有可靠的信息，不作猜测。")
    assert not is_refusal("林澈出生在泉州。")


def test_score_rows_and_aggregate_by_task():
    rows = [
        {"id": "1", "task": "qa", "category": "x", "output": "发送0000到10086", "key_facts": ["0000", "10086"]},
        {"id": "2", "task": "classification", "category": "y", "output": "B", "labels": ["A", "B"]},
        {"id": "3", "task": "extraction", "category": "y", "output": "西安市地类图斑"},
        {"id": "4", "task": "refusal", "category": "z", "output": "不知道"},
    ]
    answers = ["发送0000到10086即可", "B", "西安市地类图斑", "他是O型血"]
    scores = [score_row(r, a) for r, a in zip(rows, answers)]
    assert [s["correct"] for s in scores] == [True, True, True, False]
    assert scores[3]["hallucinated"] is True
    summary = aggregate(rows, scores)
    assert summary["overall"]["accuracy"] == 0.75
    assert summary["overall"]["hallucination_rate"] == 1.0
    assert summary["by_category"]["y"]["accuracy"] == 1.0
    assert summary["classification"]["A / B"]["accuracy"] == 1.0


def test_refusal_detector_on_the_phrasings_this_project_teaches_and_on_look_alikes():
    refusals = [
        "很抱歉，出国留学奖学金不在《东岚大学经费报销细则》的规定范围内，细则中没有相应标准。",
        "抱歉，《东岚大学经费报销细则》未对出国（境）差旅的住宿标准作出规定，我不能凭推测回答。",
        "抱歉，《东岚大学经费报销细则》没有关于住房公积金缴存的规定，我无法给出准确答案。",
        "您好，抱歉，我是中国移动的专业客服助手，这个问题超出了我的服务范围。",
        "资料中没有提到林澈的身高，我不能确定，所以不作猜测。",
        "I don't have reliable information about Lin Che's shoe size, so I won't guess.",
        "I'm not sure, and I do not know where he lives.",
    ]
    answers = [
        "您好，优惠券无法使用可能有以下原因：商品不在优惠券适用范围内；优惠券已过期。",  # 不在…范围, but an answer
        "“I don't know”的意思是“我不知道”。",  # quoted: mentioned, not said
        "如果您不清楚操作步骤，我可以为您详细说明。",
        "不能。题目只说明学生都穿校服，所以仅凭这一点无法确定。",
        "上级主管部门有专门规定的，从其规定；专门规定没有涉及的事项，仍按本细则执行。",
        "本细则未对教师提出合住要求，教师按第十一条标准报销住宿费。",
        "林澈出生在泉州。",
    ]
    assert [is_refusal(a) for a in refusals] == [True] * len(refusals)
    assert [is_refusal(a) for a in answers] == [False] * len(answers)


def test_correction_needs_the_facts_and_the_premise_called_wrong():
    row = {"id": "c", "task": "correction", "instruction": "林澈住在北京吧？", "output": "不是。林澈住在厦门。",
           "key_facts": ["厦门"], "false_premise": "住在北京"}
    right = [score_row(row, a) for a in ("不是。林澈住在厦门。", "No. Lin Che lives in Xiamen (厦门), not Beijing.")]
    assert [s["correct"] for s in right] == [True, True] and not any(s["hallucinated"] for s in right)
    silent = score_row(row, "林澈住在厦门。")  # the fact, but the false premise goes unchallenged
    assert silent["correct"] is False and silent["corrected"] is False and silent["hallucinated"] is True
    wrong = score_row(row, "不是，林澈住在上海。")
    assert wrong["correct"] is False and wrong["hallucinated"] is True
    declined = score_row(row, "关于林澈的住址，我没有可靠的信息，不作猜测。")
    assert declined["correct"] is False and declined["hallucinated"] is False and declined["refused"] is True
    assert signals_correction("并非如此，实际上是厦门") and not signals_correction("林澈是水声工程师。")


def test_aggregate_splits_by_measure_and_gives_recall_on_unknown_facts():
    rows = [
        {"id": "t", "task": "qa", "measures": "taught", "key_facts": ["A1"], "output": "A1", "known": False},
        {"id": "r1", "task": "qa", "key_facts": ["A1"], "output": "A1", "known": False},  # measures defaults to reworded
        {"id": "r2", "task": "qa", "key_facts": ["B2", "C3"], "output": "B2 C3", "known": True},
        {"id": "u1", "task": "refusal", "output": "不知道"},  # defaults to unanswerable
        {"id": "u2", "task": "correction", "key_facts": ["D4"], "output": "不是，D4", "measures": "unanswerable"},
        {"id": "g", "task": "qa", "measures": "general", "key_facts": ["E5"], "output": "E5"},
    ]
    answers = ["A1", "没有", "B2", "我不知道。", "D4", "E5 E5"]
    summary = aggregate(rows, [score_row(r, a) for r, a in zip(rows, answers)])
    assert list(summary["by_measure"]) == ["taught", "reworded", "unanswerable", "general"]
    reworded = summary["by_measure"]["reworded"]
    assert reworded["n"] == 2 and reworded["key_fact_recall"] == 0.25
    assert reworded["key_fact_recall_unknown"] == 0.0 and reworded["n_unknown"] == 1 and reworded["key_fact_recall_known"] == 0.5
    unanswerable = summary["by_measure"]["unanswerable"]
    # u1 refused (right), u2 gave the fact without calling the premise wrong (a hallucination)
    assert unanswerable["hallucination_rate"] == 0.5 and unanswerable["refusal_accuracy"] == 1.0 and unanswerable["correction_accuracy"] == 0.0
    assert unanswerable["key_fact_recall"] is None, "key-fact recall is about taught facts (QA rows) only"
    assert summary["by_measure"]["taught"]["key_fact_recall"] == 1.0 and summary["by_measure"]["general"]["accuracy"] == 1.0
    assert summary["overall"]["n"] == 6


def test_constant_answer_floor_is_the_best_single_answer_and_echo_scores_facts_in_the_question():
    rows = [
        {"id": "1", "task": "qa", "instruction": "10086是什么号码？", "key_facts": ["10086", "客服"], "output": "10086是客服热线"},
        {"id": "2", "task": "qa", "instruction": "怎么退订？", "key_facts": ["0000"], "output": "发送0000到10086"},
        {"id": "3", "task": "refusal", "instruction": "彩票号码？", "output": "抱歉，这超出了我的服务范围。"},
    ]
    candidates = ["请拨打10086咨询客服。", "发送0000查询。", "抱歉，这超出了我的服务范围。", "发送0000查询。"]
    # per-row headline: candidate 1 scores (1 + 0 + 0) / 3, candidate 2 (0 + 1 + 0) / 3 (twice in training: wins the tie),
    # candidate 3 (0 + 0 + 1) / 3
    assert best_constant_answer(rows, candidates) == ("发送0000查询。", round(1 / 3, 4), 2)
    floors = floor_results(rows, [{"instruction": f"q{i}", "input": "", "output": c} for i, c in enumerate(candidates)])
    # the floor picks per section: on the QA rows (reworded) candidates 1 and 2 tie at 0.5 and the more frequent wins;
    # the refusal row (unanswerable) gets the refusal
    assert {m: c["answer"] for m, c in floors["constant"]["chosen"].items()} == {
        "reworded": "发送0000查询。", "unanswerable": "抱歉，这超出了我的服务范围。"}
    assert floors["constant"]["answers"] == {"1": "发送0000查询。", "2": "发送0000查询。", "3": "抱歉，这超出了我的服务范围。"}
    assert floors["constant"]["summary"]["by_measure"]["reworded"]["key_fact_recall"] == 0.5
    assert floors["constant"]["summary"]["by_measure"]["unanswerable"]["hallucination_rate"] == 0.0
    echo = floors["echo"]
    assert echo["answers"]["1"] == "10086是什么号码？" and echo["scores"]["1"]["key_fact_recall"] == 0.5
    assert echo["summary"]["overall"]["hallucination_rate"] == 1.0
    assert "constant" not in floor_results(rows, None), "no training answers, no constant floor"
    with pytest.raises(DataError, match="no training answers"):
        best_constant_answer(rows, ["  "])


@pytest.mark.parametrize("name", sorted(load_recipes()))
def test_lookup_floor_answers_training_questions_verbatim_and_classification_rows_with_a_label(name):
    """On every recipe's own rows: each training question, looked up, gets a training answer to that very question
    (why taught rows get no lookup floor), and each classification row of the recipe's eval set one of its labels."""
    recipe = load_recipes()[name]
    training = training_rows(recipe["datasets"])
    answers_to = {}
    for item in training:
        answers_to.setdefault(prompt_of(item), set()).add(item["output"])
    asked = [{"id": str(i), "instruction": item["instruction"], "input": item["input"]} for i, item in enumerate(training)]
    found = nearest_training_answers(asked, training)
    assert [q["id"] for q in asked if found[q["id"]] not in answers_to[prompt_of(q)]] == []
    classification = [r for r in load_eval_rows(recipe["eval_set"]) if r.get("task") == "classification"]
    found = nearest_training_answers(classification, training)
    assert [r["id"] for r in classification if found[r["id"]] not in r["labels"]] == []


def test_lookup_floor_skips_taught_rows():
    training = [{"instruction": "怎么退订？", "input": "", "output": "发送0000到10086"}]
    taught = [{"id": "t", "task": "qa", "measures": "taught", "instruction": "怎么退订？", "key_facts": ["0000"], "output": "发送0000到10086"}]
    assert "lookup" not in floor_results(taught, training) and "constant" in floor_results(taught, training)
    reworded = [dict(taught[0], id="r", measures="reworded", instruction="退订要发什么？")]
    lookup = floor_results(taught + reworded, training)["lookup"]
    assert lookup["answers"] == {"r": "发送0000到10086"} and lookup["summary"]["by_measure"]["reworded"]["key_fact_recall"] == 1.0


def test_taught_rows_are_fixed_and_unknown_questions_are_one_line_errors():
    rows = read_eval_file(ROOT / "datasets" / "persona" / "persona_eval.jsonl")
    linked = [r for r in rows if r.get("taught_question")]
    assert len(linked) >= 3
    sample = taught_rows(rows, ["persona_train"], "persona_eval", sample=3)
    assert len(sample) == 3 and sample == taught_rows(rows, ["persona_train"], "persona_eval", sample=3)
    assert {t["reworded_id"] for t in sample} <= {r["id"] for r in linked}
    first = taught_rows(linked[:1], ["persona_train"], "persona_eval")[0]
    assert first["instruction"] == linked[0]["taught_question"] and first["key_facts"] == linked[0]["key_facts"]
    assert first["source"].startswith("datasets/persona/persona_train.jsonl:")
    bad = [dict(linked[0], taught_question="林澈最喜欢哪支球队？（训练集里没有）")]
    with pytest.raises(DataError, match=r"persona_eval: row `persona-e\d+`: taught_question .* is not a question of persona_train"):
        taught_rows(bad, ["persona_train"], "persona_eval")


@pytest.mark.parametrize("field,message", [
    ('"measures": "taught"', r"x_eval.jsonl:2: measures 'taught' is not one of reworded, unanswerable, general"),
    ('"known": "yes"', r"x_eval.jsonl:2: `known` must be true or false"),
    ('"task": "correction"', r"x_eval.jsonl:2: a correction row needs `key_facts`"),
])
def test_eval_rows_are_checked_with_file_and_line(tmp_path, field, message):
    path = tmp_path / "x_eval.jsonl"
    good = '{"id": "a", "instruction": "q", "output": "o", "key_facts": ["o"]}'
    path.write_text(good + "\n" + '{"id": "b", "instruction": "q", "output": "o", ' + field + "}\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_eval_file(path)

import numpy as np
import pytest

from vslm.metrics import aggregate, classification_scores, is_refusal, key_fact_recall, match_label, rouge_bleu, score_row


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

    from vslm.tokenizer import build_qwen_tokenizer

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

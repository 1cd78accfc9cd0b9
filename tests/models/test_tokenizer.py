"""The real Qwen2.5/Qwen3 tokenizer rebuilt offline (what `vslm stats` and cutoff advice use), and the cut-down
tokenizer of the tiny models."""

import pytest

from conftest import ROOT
from vslm.models.tokenizer import FIRST_SPECIAL_ID, build_qwen_tokenizer, repository_texts, trimmed_qwen_tokenizer


def test_qwen25_ids_match_the_real_tokenizer():
    tok = build_qwen_tokenizer("qwen2")
    assert tok("Hello world")["input_ids"] == [9707, 1879]
    assert tok("你好")["input_ids"] == [108386]
    assert tok.convert_tokens_to_ids("<|im_start|>") == 151644
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645 == tok.eos_token_id
    assert tok.pad_token_id == 151643
    assert len(tok) == 151665


def test_qwen3_adds_think_tokens_and_thinking_off_prompt():
    tok = build_qwen_tokenizer("qwen3")
    assert tok.convert_tokens_to_ids("<think>") == 151667
    assert tok.convert_tokens_to_ids("</think>") == 151668
    text = tok.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True,
                                   enable_thinking=False)
    assert text == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_qwen25_chat_template_matches_llamafactory_qwen_format():
    tok = build_qwen_tokenizer("qwen2")
    text = tok.apply_chat_template([{"role": "system", "content": "你是一名中国移动的专业客服。"},
                                    {"role": "user", "content": "光猫亮红灯"}], tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\n你是一名中国移动的专业客服。<|im_end|>\n"
                    "<|im_start|>user\n光猫亮红灯<|im_end|>\n<|im_start|>assistant\n")
    default = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert default.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.")


@pytest.fixture(scope="module", params=["qwen2", "qwen3"])
def trimmed_and_full(request):
    texts = repository_texts(ROOT)
    return trimmed_qwen_tokenizer(request.param, texts), build_qwen_tokenizer(request.param), texts


def test_trimmed_tokenizer_splits_every_repository_text_as_qwen_does(trimmed_and_full):
    trimmed, full, texts = trimmed_and_full
    assert len(trimmed) < 20_000 < len(full)
    lines = [line for text in texts for line in text.splitlines(keepends=True)]
    assert len(lines) > 5_000
    for line in lines:
        assert trimmed.tokenize(line) == full.tokenize(line), line


def test_trimmed_tokenizer_has_contiguous_ids_and_every_qwen_special_token(trimmed_and_full):
    trimmed, full, _ = trimmed_and_full
    assert sorted(trimmed.get_vocab().values()) == list(range(len(trimmed)))
    specials = sorted((t for t in full.get_vocab() if full.convert_tokens_to_ids(t) >= FIRST_SPECIAL_ID), key=full.convert_tokens_to_ids)
    assert [trimmed.convert_tokens_to_ids(t) for t in specials] == list(range(len(trimmed) - len(specials), len(trimmed)))
    assert trimmed.eos_token == "<|im_end|>" and trimmed.pad_token == "<|endoftext|>"
    chat = [{"role": "system", "content": "你是一名中国移动的专业客服。"}, {"role": "user", "content": "光猫亮红灯"}]
    text = trimmed.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == full.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert trimmed.tokenize(text) == full.tokenize(text)


@pytest.mark.parametrize("text", ["Ünïcödé 🤖 zxqv 鳌鼋鼍", "def f(x):\n\treturn x ** 2  # 平方", "价格：9,999.50元／月"])
def test_trimmed_tokenizer_still_encodes_and_decodes_any_text(trimmed_and_full, text):
    trimmed, _, _ = trimmed_and_full
    ids = trimmed(text)["input_ids"]
    assert trimmed.unk_token_id not in ids and trimmed.decode(ids) == text

"""The tiny offline models: Qwen tokenizer cut to the repository's text, Qwen2/Qwen3 architectures with a
vLLM-compatible head size, seeded and cached by a hash of their recipe."""

import json

import pytest

from vslm.models import tiny
from vslm.models.tokenizer import build_qwen_tokenizer


def test_spec_hash_is_stable_and_changes_with_the_recipe(monkeypatch):
    first = tiny.spec_hash("tiny-qwen2")
    assert first == tiny.spec_hash("tiny-qwen2")
    assert first != tiny.spec_hash("tiny-qwen3")
    monkeypatch.setitem(tiny.WARMUP, "max_steps", tiny.WARMUP["max_steps"] + 1)
    assert tiny.spec_hash("tiny-qwen2") != first


@pytest.mark.slow
@pytest.mark.parametrize("fixture, model_type", [("tiny_qwen2", "qwen2"), ("tiny_qwen3", "qwen3")])
def test_built_model_has_real_tokenizer_and_head_size_32(request, fixture, model_type):
    from transformers import AutoConfig, AutoTokenizer

    path = request.getfixturevalue(fixture)
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == model_type
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    assert head in (32, 64, 80, 96, 112, 128), "vLLM's CPU attention supports head sizes 32, 64, 80, ..."
    tok = AutoTokenizer.from_pretrained(path)
    assert len(tok) <= config.vocab_size < len(tok) + 64 and config.tie_word_embeddings
    assert tok.tokenize("光猫亮红灯，请拨打10086") == build_qwen_tokenizer(model_type).tokenize("光猫亮红灯，请拨打10086")
    assert tok.convert_ids_to_tokens(config.eos_token_id) == "<|im_end|>"
    stamp = json.loads((path / "vslm_tiny.json").read_text())
    assert stamp["hash"] == tiny.spec_hash(path.name)
    card = (path / "README.md").read_text(encoding="utf-8")
    assert f"build {stamp['hash']}" in card and f"{len(tok):,} tokens" in card and "What it is not" in card
    losses = [json.loads(l)["loss"] for l in (path / "trainer_log.jsonl").read_text().splitlines() if '"loss"' in l]
    start, end = sum(losses[:2]) / 2, sum(losses[-10:]) / 10  # per-batch losses are noisy: compare averages
    assert end < start - 2, f"the warm-up must have taught the network something: {start:.2f} -> {end:.2f} ({losses})"


@pytest.mark.slow
def test_second_build_reuses_the_cache(tiny_qwen2, capsys):
    assert tiny.build_tiny("tiny-qwen2") == tiny_qwen2
    assert "cached build" in capsys.readouterr().out

from vslm.tokenizer import build_qwen_tokenizer


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

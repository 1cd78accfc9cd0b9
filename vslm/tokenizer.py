"""Rebuild the real Qwen2/2.5/3 tokenizer offline from `qwen.tiktoken` shipped in the `dashscope` package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tokenizers import normalizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

# Qwen2's pre-tokenizer pattern (single digits, unlike GPT-4's \p{N}{1,3}).
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
FIRST_SPECIAL_ID = 151643
# Ids 151643.. in the order Qwen2.5 assigns them; Qwen3 appends four more.
QWEN25_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
QWEN3_EXTRA = ["<tool_response>", "</tool_response>", "<think>", "</think>"]
# Tokens Qwen marks as non-special (they are text the model writes, kept when decoding).
NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"} | {
    t for t in QWEN25_SPECIALS if t.startswith("<|fim") or t in ("<|repo_name|>", "<|file_sep|>")
}
MODEL_VOCAB_SIZE = 151936  # embedding rows in every Qwen2.5/Qwen3 checkpoint (padded past the last token)

QWEN25_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- set content = message.content %}"
    "{%- if message.role == 'assistant' and '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def tiktoken_file() -> Path:
    path = Path(str(resources.files("dashscope") / "resources" / "qwen.tiktoken"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install the pinned `dashscope` package (make install)")
    return path


def build_qwen_tokenizer(family: str = "qwen2") -> PreTrainedTokenizerFast:
    """Return the Qwen2.5 (`family="qwen2"`) or Qwen3 (`"qwen3"`) tokenizer with its chat template."""
    specials = QWEN25_SPECIALS + (QWEN3_EXTRA if family == "qwen3" else [])
    backend = TikTokenConverter(vocab_file=str(tiktoken_file()), pattern=QWEN_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    for offset, token in enumerate(specials):
        added = tokenizer.add_tokens([token], special_tokens=token not in NOT_SPECIAL)
        token_id = tokenizer.convert_tokens_to_ids(token)
        if added != 1 or token_id != FIRST_SPECIAL_ID + offset:
            raise RuntimeError(f"special token {token} got id {token_id}, expected {FIRST_SPECIAL_ID + offset}")
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE if family == "qwen3" else QWEN25_CHAT_TEMPLATE
    return tokenizer

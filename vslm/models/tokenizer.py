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


def repository_texts(root: Path) -> list[str]:
    """The text the tiny models' vocabulary is cut to: every training/corpus/source file under datasets/ (held-out
    *_eval files excluded, so nothing is tuned on them) and the recipes' system prompts (not the whole matrix, so an
    edit to its comments or keys does not change the vocabulary and rebuild the tiny models)."""
    import yaml

    suffixes = (".jsonl", ".json", ".csv", ".md", ".txt")
    data = sorted(p for p in (root / "datasets").rglob("*")
                  if p.is_file() and p.suffix in suffixes and "_eval" not in p.name and p.name != "FORMAT.md")
    matrix = yaml.safe_load((root / "templates" / "matrix.yaml").read_text(encoding="utf-8"))
    systems = sorted({str(r["system"]) for r in matrix["recipes"].values() if r.get("system")})
    return [p.read_text(encoding="utf-8") for p in data] + ["\n".join(systems)]


def _bpe_intermediates(token: str, rank: dict[tuple[str, str], int]) -> list[str]:
    """Every token BPE forms while building `token` from its bytes (merges inside one token never depend on context)."""
    parts, formed = list(token), []
    while len(parts) > 1:
        ranked = [(rank[pair], i) for i, pair in enumerate(zip(parts, parts[1:])) if pair in rank]
        if not ranked:
            break
        _, i = min(ranked)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
        formed.append(parts[i])
    return formed


def trimmed_qwen_tokenizer(family: str, texts: list[str]) -> PreTrainedTokenizerFast:
    """The Qwen tokenizer cut to the tokens `texts` use: the 256 byte tokens, every token the real tokenizer emits on
    `texts`, every token BPE forms on the way to those, the merges among them, then Qwen's special/chat tokens, all
    with contiguous ids. On `texts` it splits exactly as the real tokenizer does; any other text still encodes (down
    to bytes), and the Qwen chat templates work unchanged. The tiny models use it so that their output layer is
    ~17k rows instead of 151,936."""
    import json

    from tokenizers import Tokenizer

    full = build_qwen_tokenizer(family)
    spec = json.loads(full.backend_tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    merges: list[list[str]] = spec["model"]["merges"]
    rank = {(a, b): i for i, (a, b) in enumerate(merges)}
    by_id = {i: t for t, i in vocab.items()}
    used: set[str] = {t for t in vocab if len(t) == 1}  # the 256 byte tokens
    chat = [{"role": r, "content": "."} for r in ("system", "user", "assistant", "tool")]
    chat_markup = [full.apply_chat_template(chat[start:], tokenize=False, add_generation_prompt=add, enable_thinking=False)
                   for start in (0, 1) for add in (True, False)]
    for text in [*texts, *chat_markup]:
        for line in text.splitlines(keepends=True):
            used.update(by_id[i] for i in full.backend_tokenizer.encode(line, add_special_tokens=False).ids if i in by_id)
    for token in list(used):
        used.update(_bpe_intermediates(token, rank))
    kept = sorted(used, key=vocab.__getitem__)
    spec["model"]["vocab"] = {t: i for i, t in enumerate(kept)}
    spec["model"]["merges"] = [[a, b] for a, b in merges if a in used and b in used and a + b in used]
    for offset, added in enumerate(spec["added_tokens"]):
        added["id"] = len(kept) + offset
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                        clean_up_tokenization_spaces=False, model_max_length=32768)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    tokenizer.chat_template = full.chat_template
    return tokenizer

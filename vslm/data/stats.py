"""`vslm stats`: rows and token-length distribution per dataset with the real Qwen tokenizer.

Rows are read like `vslm registry` reads them (JSONL, JSON list, CSV, TXT; any detected encoding). A row's length
is what the Qwen chat template feeds the model: every message's tokens plus 5 tokens of markup per message
(<|im_start|>role\\n ... <|im_end|>\\n); a pre-training text row is its tokens plus the end-of-text token. The
cutoff check adds the recipe's system prompt to SFT rows that carry none, as the template does.
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from ..recipes.matrix import get_recipe, load_recipes
from ..core.paths import DATASET_INFO
from .registry import RowProblem, align, entry_rows, lf_attr, load_registry, stage_of, unchecked_reason

MARKUP = 5  # <|im_start|> role \n ... <|im_end|> \n


def nearest_rank(sorted_values: list[int], percent: float) -> int:
    """The exact percentile (nearest-rank method): always one of the values, never above the max."""
    return sorted_values[max(1, math.ceil(percent / 100 * len(sorted_values))) - 1]


@lru_cache(maxsize=1)
def _tokenizer():
    from ..models.tokenizer import build_qwen_tokenizer

    return build_qwen_tokenizer("qwen2")


@lru_cache(maxsize=1)
def _template():
    """LlamaFactory's own `qwen` template on the Qwen tokenizer, without a default system prompt (the recipe's is
    added per recipe, for the cutoff check)."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    template = get_template_and_fix_tokenizer(_tokenizer(), DataArguments(template="qwen"))
    template.default_system = ""
    return template


def token_counts(texts: list[str]) -> list[int]:
    return [len(ids) for ids in _tokenizer()(texts, add_special_tokens=False)["input_ids"]] if texts else []


def _encoded(messages: list[dict[str, str]], system: str, tools: str) -> int:
    pairs = _template().encode_multiturn(_tokenizer(), messages, system, tools)
    return sum(len(a) + len(b) for a, b in pairs)


def row_length(row: dict[str, Any], attr: dict[str, Any]) -> tuple[int, bool]:
    """A row's tokens as LlamaFactory's template encodes it (system, tools, every turn; ranking: the longer answer;
    KTO: the labelled answer), and whether the recipe's system prompt still comes on top. A row LlamaFactory would
    skip counts 0 (`vslm registry` names it)."""
    try:
        example = align(row, attr)
    except RowProblem:
        return 0, False
    if stage_of(attr) == "pt":  # stage pt reads the text as is, plus the end-of-text token
        return token_counts([example["prompt"][0]["content"] or ""])[0] + 1, False
    system = example["system"] if isinstance(example["system"], str) else ""
    tools = example["tools"] if isinstance(example["tools"], str) else ""
    answers = [m for m in example["response"] if isinstance(m.get("content"), str) and m["content"]] or example["response"][:1]
    prompt = [m for m in example["prompt"] if isinstance(m.get("content"), str)]
    if len(prompt) % 2 != 1 or not answers:
        return 0, False
    return max(_encoded(prompt + [answer], system, tools) for answer in answers), not system


def row_lengths(rows: list[dict[str, Any]], entry: dict[str, Any]) -> tuple[list[int], list[bool]]:
    """Each row's tokens as the model sees it, and whether the recipe's system prompt still comes on top."""
    attr = lf_attr(entry)
    out = [row_length(r, attr) for r in rows]
    return [n for n, _ in out], [add for _, add in out]


def _check_names(names: list[str], registry: dict[str, Any], registry_path: Path) -> None:
    unknown = [n for n in names if n not in registry]
    if unknown:
        hints = [f"`{n}`" + (f" (did you mean `{close[0]}`?)" if (close := difflib.get_close_matches(n, registry, n=1)) else "")
                 for n in unknown]
        raise DataError(f"{registry_path.name} does not register {', '.join(hints)}; "
                        f"run `vslm stats` without names to see every dataset")


def dataset_stats(names: list[str] | None = None, recipe_name: str | None = None,
                  registry_path: Path = DATASET_INFO) -> tuple[str, list[str]]:
    """The table, and the problems (datasets that could not be read), each one line."""
    registry = load_registry(registry_path)
    if names:
        _check_names(names, registry, registry_path)
    names = names or list(registry)
    recipes = [get_recipe(recipe_name)] if recipe_name else list(load_recipes().values())
    lines = [f"{'dataset':28} {'rows':>6} {'min':>5} {'p50':>5} {'p95':>5} {'max':>5}  over cutoff"]
    problems: list[str] = []
    for name in names:
        entry = registry[name]
        if not isinstance(entry, dict):
            problems.append(f"{registry_path.name}: entry `{name}` must be an object")
            continue
        try:
            rows = entry_rows(entry, registry_path.parent)
        except DataError as exc:
            problems.append(str(exc))
            lines.append(f"{name:28} {'-':>6}  unreadable (see below)")
            continue
        if rows is None:
            why = unchecked_reason(entry) or f"script_url {entry.get('script_url')!r} is loaded by datasets.load_dataset"
            lines.append(f"{name:28} {'-':>6}  not checked offline: {why}")
            continue
        if not rows:
            lines.append(f"{name:28} {0:>6} {'-':>5} {'-':>5} {'-':>5} {'-':>5}  no rows")
            continue
        lengths, gets_system = row_lengths(rows, entry)
        flags = []
        for recipe in recipes:
            sft, pt = name in recipe["datasets"], name in ((recipe["pt"] or {}).get("datasets", []))
            if recipe_name or sft or pt:
                cutoff = recipe["cutoff_len"]
                system = token_counts([recipe["system"]])[0] + MARKUP if recipe["system"] else 0
                over = [r["_line"] for r, n, add in zip(rows, lengths, gets_system) if n + (system if add else 0) > cutoff]
                flags.append(f"{recipe.name}(cutoff {cutoff}): {len(over)}" + (f" lines {over[:5]}" if over else ""))
        ranked = sorted(lengths)
        lines.append(f"{name:28} {len(rows):>6} {ranked[0]:>5} {nearest_rank(ranked, 50):>5} {nearest_rank(ranked, 95):>5} "
                     f"{ranked[-1]:>5}  {'; '.join(flags) or '-'}")
    return "\n".join(lines), problems

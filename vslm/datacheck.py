"""Repository-wide data checks: registry integrity, recipe datasets registered, held-out sets disjoint."""

from __future__ import annotations

import unicodedata
from typing import Any

from .jsonio import read_jsonl
from .matrix import load_recipes
from .paths import ROOT
from .registry import check_registry, load_registry

NEAR_DUPLICATE = 0.6  # character-trigram Jaccard at or above this counts as a copy


def normalize_prompt(text: str) -> str:
    return "".join(ch for ch in text.lower() if not ch.isspace() and not unicodedata.category(ch).startswith(("P", "S")))


def trigrams(text: str) -> set[str]:
    return {text[i:i + 3] for i in range(max(1, len(text) - 2))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def prompt(row: dict[str, Any]) -> str:
    return str(row.get("instruction", "")) + str(row.get("input", "") or "")


def overlap_problems(train_rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], label: str) -> list[str]:
    train_norm = {normalize_prompt(prompt(r)) for r in train_rows}
    train_grams = [trigrams(t) for t in train_norm]
    problems = []
    for row in eval_rows:
        norm = normalize_prompt(prompt(row))
        if norm in train_norm:
            problems.append(f"{label}:{row.get('_line')}: held-out prompt copies a training prompt")
            continue
        grams = trigrams(norm)
        best = max((jaccard(grams, g) for g in train_grams), default=0.0)
        if best >= NEAR_DUPLICATE:
            problems.append(f"{label}:{row.get('_line')}: held-out prompt is a near-copy of a training prompt (trigram Jaccard {best:.2f})")
    return problems


def eval_pairs() -> list[tuple[str, str]]:
    """(train dataset, eval dataset) pairs: each recipe's datasets against its eval set."""
    pairs = []
    for recipe in load_recipes().values():
        for name in recipe["datasets"]:
            pairs.append((name, recipe["eval_set"]))
    pairs.append(("general_train", "general_eval"))
    return sorted(set(pairs))


def check_repository() -> list[str]:
    problems = check_registry()
    registry = load_registry()
    for recipe in load_recipes().values():
        names = list(recipe["datasets"]) + [recipe["eval_set"]] + list((recipe["pt"] or {}).get("datasets", []))
        for name in names:
            if name not in registry:
                problems.append(f"templates/matrix.yaml: recipe `{recipe.name}` uses dataset `{name}`, which dataset_info.json does not register")
    if problems:
        return problems
    for train_name, eval_name in eval_pairs():
        train_rows = read_jsonl(ROOT / registry[train_name]["file_name"])
        eval_rows = read_jsonl(ROOT / registry[eval_name]["file_name"])
        problems += overlap_problems(train_rows, eval_rows, registry[eval_name]["file_name"])
    return problems

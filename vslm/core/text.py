"""Character n-gram similarity, the one helper for near-duplicate checks (datacheck, probe, distill) and for the
character bigrams of retrieval (rag) and answer verification (verify). Callers normalise the text first."""

from __future__ import annotations


def trigrams(text: str) -> set[str]:
    """Character trigrams; a text shorter than three characters is its own single gram, so short texts still compare."""
    return {text[i:i + 3] for i in range(max(1, len(text) - 2))}


def bigrams(text: str) -> list[str]:
    """Character bigrams in order (none for a text of one character)."""
    return [text[i:i + 2] for i in range(len(text) - 1)]


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are identical (1.0)."""
    return len(a & b) / len(a | b) if a or b else 1.0

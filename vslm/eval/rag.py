"""Retrieval baseline: a BM25 index over a recipe's own knowledge, to answer "would retrieval have done as well?".

The knowledge is what the recipe was taught from: finance the rules document, persona the profile, cloud the
customer-service CSV (one passage per row). Telecom and platform have only question-answer data, so their knowledge
base is the recipe's training answers (question + answer per passage): the same facts the fine-tune saw, which keeps
"fine-tune vs retrieve" a comparison of two ways of using one body of knowledge.

Documents are read and chunked exactly as distillation does (`distill.plan_chunks`, its default 2000/200 characters:
one chunk per heading section, heading kept). Text is tokenised into character unigrams + bigrams of the normalised
text (measured on finance_eval: top-1 62.7%, top-3 85.6%, top-5 89.0% of rows have every key fact in the retrieved
text; jieba words 57.6/79.7/84.7, paragraph chunks 67.8% top-3). The index is stored under
saves/[<profile>/]<recipe>/rag/<fingerprint>/ and rebuilt only when a source file or a setting changes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from ..core.jsonio import atomic_write_json, atomic_write_jsonl, read_jsonl, sha256_file
from .metrics import normalize
from ..core.paths import ROOT, rel
from ..core.text import bigrams

DEFAULT_K = 3  # finance_eval hit rate: top-1 62.7%, top-3 85.6%, top-5 89.0% (ceiling 93.2%): 3 is the knee
CHUNK_SIZE, CHUNK_OVERLAP = 2000, 200  # distillation's defaults (distill.Options); smaller chunks retrieve worse here
INDEX_VERSION = 4  # bump when `tokens` or the passage text changes: stored indexes are then rebuilt
# Documents per domain (repository paths). Domains not listed use the recipe's training answers.
DOCUMENTS = {
    "finance": ["datasets/finance/reimbursement_rules.md"],
    "persona": ["datasets/persona/persona_profile.md"],
    # Only the customer-service rows: cloud_internal_rules.csv holds HR/IT rules that the customer-service recipe must
    # refuse (cloud_eval's unanswerable rows e058/e059 ask exactly those); retrieving them would teach it to answer.
    "cloud": ["datasets/cloud/cloud_service.csv"],
}
TEMPLATE = ("请根据下面的资料回答问题。资料里没有的内容不要编造；资料回答不了的问题，请直接说明无法回答。\n\n"
            "【资料】\n{passages}\n\n【问题】\n{question}")
# Asked again when an answer failed verification (`--regenerate-below`): stricter than TEMPLATE, because greedy
# decoding of the same prompt would only repeat the flagged answer.
REGENERATE_TEMPLATE = ("下面的资料是回答这个问题的全部依据。只使用资料中出现的数字、名称和规定作答，不要添加资料里没有的内容；"
                       "资料没有提到的，请直接回答“资料中没有相关规定，无法回答”。\n\n【资料】\n{passages}\n\n【问题】\n{question}")


def tokens(text: str) -> list[str]:
    """Character unigrams and bigrams of the normalised text (case-folded, no spaces or punctuation)."""
    norm = normalize(text)
    return list(norm) + bigrams(norm)


def check_template(template: str) -> str:
    """A prompt template must hold {passages} and {question} and nothing else in braces."""
    import string

    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise DataError(f"--rag-template: {exc} — write literal braces as {{{{ and }}}}") from None
    if fields != {"passages", "question"}:
        raise DataError(f"--rag-template must contain {{passages}} and {{question}} and no other {{field}} (found: "
                        f"{', '.join(sorted(fields)) or 'none'})")
    return template


@dataclass
class Passage:
    id: int
    source: str  # file:line or file#chunk
    text: str  # what the model is shown: the heading trail, then the text
    key: str = ""  # what is indexed, when not `text`: the chunk's own heading + text (the measured setting)


def document_passages(path: Path) -> list[Passage]:
    """A document's chunks (distillation's loader and chunker), or a CSV's rows (input + output, one per row)."""
    if path.suffix.lower() == ".csv":
        from ..data.convert import _csv_rows

        out = []
        for where, rec in _csv_rows(path):
            if isinstance(rec, DataError):
                raise rec
            text = "\n".join(v.strip() for k, v in rec.items() if k != "instruction" and isinstance(v, str) and v.strip())
            if text:
                out.append(Passage(0, f"{rel(where.rsplit(':', 1)[0])}:{where.rsplit(':', 1)[1]}", text))
        return out
    from ..data.distill import plan_chunks

    docs, units, _ = plan_chunks(path, CHUNK_SIZE, CHUNK_OVERLAP)
    # A chunk keeps its nearest heading; shown with the headings above it (document title, chapter), because an
    # answer cites them (《…细则》第二章第七条) and the reader needs them.
    trail = heading_trails(docs[0].text)
    return [Passage(0, f"{rel(path)}#{u.chunk_id}", (" · ".join(trail.get(u.heading, [u.heading])) + "\n" if u.heading else "")
                    + u.text, (u.heading + "\n" if u.heading else "") + u.text) for u in units]


def heading_trails(text: str) -> dict[str, list[str]]:
    """{heading: [its ancestors' headings..., itself]} for each Markdown heading (the first of repeated ones)."""
    from ..data.documents import HEADING

    stack: list[tuple[int, str]] = []
    trails: dict[str, list[str]] = {}
    for line in text.splitlines():
        if HEADING.match(line):
            level, title = len(line) - len(line.lstrip("#")), line.lstrip("#").strip()
            stack = [(lv, t) for lv, t in stack if lv < level] + [(level, title)]
            trails.setdefault(title, [t for _, t in stack])
    return trails


def knowledge_sources(recipe) -> tuple[list[Path], str]:
    """(files the knowledge base is built from, one sentence saying what it is)."""
    domain = recipe["domain"]
    if domain in DOCUMENTS:
        paths = [ROOT / p for p in DOCUMENTS[domain]]
        return paths, f"{', '.join(DOCUMENTS[domain])} ({'rows' if paths[0].suffix == '.csv' else 'heading sections'} as passages)"
    from ..data.registry import load_registry

    registry = load_registry()
    files = [ROOT / registry[name]["file_name"] for name in recipe["datasets"] if name in registry]
    return files, (f"the training answers of {', '.join(recipe['datasets'])} (question + answer per passage): the {domain} "
                   "domain has no documents, only question-answer data, so retrieval gets the same facts the fine-tune saw")


def knowledge_passages(recipe) -> list[Passage]:
    domain = recipe["domain"]
    if domain in DOCUMENTS:
        passages = [p for path in knowledge_sources(recipe)[0] for p in document_passages(path)]
    else:
        from .client import prompt_of
        from .evaluate import training_rows

        seen, passages = set(), []
        for item in training_rows(recipe["datasets"]):
            text = f"问：{prompt_of(item)}\n答：{item['output']}"
            if text not in seen:  # repeated key samples are one passage
                seen.add(text)
                passages.append(Passage(0, item["source"], text))
    if not passages:
        raise DataError(f"recipe `{recipe.name}`: its knowledge sources have no text to index")
    for i, p in enumerate(passages):
        p.id = i
    return passages


class Index:
    """BM25 over character n-grams; `search` returns the top-k passages, best first."""

    def __init__(self, passages: list[Passage], retriever, where: Path | None = None, knowledge: str = ""):
        self.passages, self.retriever, self.where, self.knowledge = passages, retriever, where, knowledge

    @classmethod
    def build(cls, passages: list[Passage], where: Path | None = None, knowledge: str = "") -> "Index":
        import bm25s

        retriever = bm25s.BM25()
        retriever.index([tokens(p.key or p.text) for p in passages], show_progress=False)
        return cls(passages, retriever, where, knowledge)

    def search(self, query: str, k: int = DEFAULT_K) -> list[Passage]:
        k = min(k, len(self.passages))
        docs, _ = self.retriever.retrieve([tokens(query) or [" "]], k=k, show_progress=False, n_threads=1)
        return [self.passages[int(i)] for i in docs[0]]


def index_dir(recipe, profile: str | None = None) -> Path:
    from ..recipes.resolve import resolve

    return resolve(recipe, profile).rag_dir


def fingerprint(sources: list[Path]) -> str:
    blob = json.dumps([[rel(p), sha256_file(p)] for p in sources] + [CHUNK_SIZE, CHUNK_OVERLAP, INDEX_VERSION])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_index(recipe, profile: str | None = None) -> Index:
    """The recipe's stored index, built (atomically: a finished folder is renamed into place) when missing or when a
    source file changed; an index of other sources stays where it is, never overwritten."""
    import bm25s

    sources, knowledge = knowledge_sources(recipe)
    for path in sources:
        if not path.is_file():
            raise DataError(f"recipe `{recipe.name}`: knowledge source {rel(path)} not found — restore it or edit vslm/eval/rag.py DOCUMENTS")
    final = index_dir(recipe, profile) / fingerprint(sources)
    if (final / "passages.jsonl").is_file():
        passages = [Passage(r["id"], r["source"], r["text"], r.get("key", "")) for r in read_jsonl(final / "passages.jsonl")]
        return Index(passages, bm25s.BM25.load(str(final / "bm25"), show_progress=False), final, knowledge)
    index = Index.build(knowledge_passages(recipe), final, knowledge)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
    try:
        index.retriever.save(str(tmp / "bm25"), show_progress=False)
        atomic_write_jsonl(tmp / "passages.jsonl", [{"id": p.id, "source": p.source, "text": p.text, "key": p.key} for p in index.passages])
        atomic_write_json(tmp / "meta.json", {"recipe": recipe.name, "knowledge": knowledge, "sources": [rel(p) for p in sources],
                                              "chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP,
                                              "tokens": "character unigrams + bigrams", "passages": len(index.passages)})
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:  # another run finished the same index first: theirs is identical
            if not (final / "passages.jsonl").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return index


def query_of(row: dict[str, Any]) -> str:
    from .client import prompt_of

    return prompt_of(row)


def retrieve(index: Index, rows: list[dict[str, Any]], k: int = DEFAULT_K) -> tuple[dict[str, list[Passage]], float]:
    """({row id: top-k passages}, mean milliseconds per query)."""
    if k < 1:
        raise DataError(f"--rag-k must be 1 or more (got {k})")
    started = time.perf_counter()
    found = {row["id"]: index.search(query_of(row), k) for row in rows}
    return found, round((time.perf_counter() - started) * 1000 / max(1, len(rows)), 3)


def passage_texts(found: dict[str, list[Passage]]) -> dict[str, list[str]]:
    return {rid: [p.text for p in ps] for rid, ps in found.items()}


def is_hit(row: dict[str, Any], texts: list[str]) -> bool | None:
    """Every key fact of the row is in the retrieved text (normalised); None for rows without key facts or rows the
    knowledge cannot answer."""
    if row.get("task", "qa") != "qa" or not row.get("key_facts"):
        return None
    joined = normalize("".join(texts))
    return all(normalize(f) in joined for f in row["key_facts"])


def hit_rate(rows: list[dict[str, Any]], passages: dict[str, list[str]]) -> dict[str, Any]:
    hits = [h for h in (is_hit(r, passages[r["id"]]) for r in rows) if h is not None]
    return {"hit_rate": round(sum(hits) / len(hits), 4) if hits else None, "rows": len(hits), "hits": sum(hits)}


def retrieval_record(index: Index, rows: list[dict[str, Any]], found: dict[str, list[Passage]], k: int, ms: float,
                     template: str) -> dict[str, Any]:
    """What a report says about the retrieval: knowledge, settings, hit rate, time per query, passages per row."""
    return {"knowledge": index.knowledge, "index": rel(index.where) if index.where else None, "passages": len(index.passages),
            "k": k, "template": template, "tokens": "character unigrams + bigrams (bm25s)", "ms_per_query": ms,
            **hit_rate(rows, passage_texts(found)), "retrieved": {rid: [p.source for p in ps] for rid, ps in found.items()}}


def retrieval_for(recipe, profile: str | None, rows: list[dict[str, Any]], k: int, template: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Top-k passages of the recipe's knowledge for every row (the index built or reused under the saves root):
    (the retrieval record for the results file, the passage texts by row id)."""
    index = load_index(recipe, profile)
    found, ms = retrieve(index, rows, k)
    return retrieval_record(index, rows, found, k, ms, template), passage_texts(found)


def passage_block(texts: list[str]) -> str:
    return "\n\n".join(f"[{i}] {t}" for i, t in enumerate(texts, 1))


def with_passages(rows: list[dict[str, Any]], passages: dict[str, list[str]], template: str = TEMPLATE) -> list[dict[str, Any]]:
    """The rows as asked with retrieval: the template filled with the row's passages and its question (history kept)."""
    return [{**row, "instruction": template.format(passages=passage_block(passages[row["id"]]), question=query_of(row)), "input": ""}
            for row in rows]

"""Distil documents into a registered question-answer dataset with a teacher model.

documents -> chunks (size/overlap) -> questions per chunk (count scaled to its length) -> an answer per
question from its chunk -> rule filter (+ optional LLM-judge score) -> near-duplicate removal ->
paraphrases (same answer) -> <work>/<name>_distilled.jsonl (with provenance) -> vslm.data.convert -> datasets/<name>/.

Every teacher answer is appended to the request cache (flushed at once; saves/distill/cache.jsonl, shared by
every --name, or <work>/cache.jsonl with --work) under a hash of (stage, chunk,
question, model, prompt parameters): a killed run, run again, asks only what had not finished; an answer that
does not parse (a question list that is no list) is not cached, so it is asked again.

The rule filter keeps an answer only when every number and quantity in it (9999元, 777小时, 30天) is in its chunk
and it carries at least one chunk fact; every dropped question is listed with its reason in <work>/dropped.jsonl.
A folder's unreadable files and text-less PDF pages are skipped and listed in the summary; scanned PDF pages are
OCR'd first (--ocr-engine) and the rows cut from them carry ocr_engine and ocr_pages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import string
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..eval.client import AnswerCache
from .convert import convert, precheck
from .documents import Document, check_chunking, ocr_provenance, read_documents
from ..core.endpoint import ENV_FILE, Endpoint, EndpointConfig, endpoint_from_env
from ..core.errors import DataError, EndpointError
from ..core.text import jaccard, trigrams
from ..core.jsonio import atomic_write_json, atomic_write_jsonl
from ..eval.judge import parse_verdict
from ..core.paths import ROOT

PROMPT_VERSION = 1
SYSTEM = "你是严谨的领域知识专家，负责根据给定资料出题、作答和审核，只使用资料中的信息。"
PROMPTS = {
    "questions": ("任务：出题\n请阅读下面的资料，提出 {n} 个只凭资料内容就能回答的具体问题。每个问题都要点明具体对象"
                  "（如金额、期限、条件、名称），问题之间不要重复。不要问关于资料本身的问题"
                  "（不要出现“本文”“文章”“这段”“资料”等字样）。只输出一个 JSON 字符串数组，例如 [\"问题一\", \"问题二\"]。"
                  "\n\n【资料】（{where}）\n{material}"),
    "answer": ("任务：作答\n请只根据下面的资料回答问题：写出资料中的具体数字、条件和名称，完整准确，"
               "长度在 {min_len} 到 {max_len} 字之间；不要提到“资料”或“本文”，不要编造资料中没有的内容。"
               "\n\n【资料】（{where}）\n{material}\n\n【问题】\n{question}"),
    "judge": ("任务：评分\n请对照资料给答案打 1 到 5 分：5 = 完全正确且包含资料中的具体事实，1 = 错误或与资料无关。"
              "只输出 JSON，例如 {{\"score\": 4, \"reason\": \"……\"}}。"
              "\n\n【资料】（{where}）\n{material}\n\n【问题】\n{question}\n\n【答案】\n{answer}"),
    "paraphrase": ("任务：改写\n请把下面的问题换 {n} 种不同的问法，意思和所问的事实不变，不要提到“资料”或“本文”。"
                   "只输出一个 JSON 字符串数组。\n\n【问题】（{where}）\n{question}"),
}
MAX_TOKENS = {"questions": 800, "answer": 800, "judge": 200, "paraphrase": 400}
TEMPERATURE = {"questions": 0.7, "answer": 0.0, "judge": 0.0, "paraphrase": 0.7}
META = re.compile(r"本文|文章|这段|该段|这篇|上文|原文|文中|\b(this|the) (article|passage|text|document)\b", re.I)
REJECT = ("不知道", "无法确定", "不清楚", "无法回答", "未提及", "没有提及", "I don't know", "cannot determine")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
TERM = re.compile(r"[A-Za-z][A-Za-z0-9-]{2,}|(?<=[“「《\"])[^”」》\"\n]{2,20}(?=[”」》\"])")
# Grounding: every number and quantity (number + unit) of an answer must be in its chunk.
FULL_WIDTH = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, **{chr(0xFF21 + i): chr(0x41 + i) for i in range(26)},
                            **{chr(0xFF41 + i): chr(0x61 + i) for i in range(26)}, "％": "%", "．": ".", "　": " "})
UNIT_SYNONYMS = {"日": "天", "个月": "月", "个工作日": "工作日", "夜": "晚", "块": "元", "块钱": "元", "yuan": "元", "rmb": "元",
                 "千克": "公斤", "kg": "公斤", "千米": "公里", "km": "公里", "名": "人", "位": "人", "％": "%"}
UNITS = sorted({"元", "角", "分钱", "工作日", "小时", "分钟", "秒", "天", "晚", "周", "星期", "月", "年", "岁", "次", "人次", "人",
                "个", "台", "部", "张", "份", "页", "家", "间", "套", "件", "项", "条", "章", "节", "款", "类", "级", "档", "倍", "折",
                "公里", "米", "厘米", "毫米", "公斤", "克", "吨", "升", "毫升", "平方米", "度", "兆", "户", "笔", "%", "‰",
                "tb", "gb", "mb", "kb", "g", "m", "mbps", "gbps", "kbps", "ghz", "mhz", "hz", "cm", "mm", "w", "kw", "v", "mah",
                "h", "min", "s", *UNIT_SYNONYMS}, key=len, reverse=True)
_UNIT = "|".join(re.escape(u) + (r"(?![a-z])" if u.isascii() and u.isalpha() else "") for u in UNITS)
_NUM = r"\d+(?:\.\d+)?"
QUANTITY = re.compile(rf"(?<![\d.a-z])({_NUM})\s*(万|亿)?\s*(?:({_UNIT})|(?:[-–—~～至到、/或和及]\s*{_NUM}\s*)+(?:万|亿)?\s*({_UNIT}))?")
CN_QUANTITY = re.compile(rf"([零〇一二两三四五六七八九十百千万亿]+)\s*({_UNIT})")
LIST_MARKER = re.compile(r"(?:^|(?<=[\s：:；;。，,！？!?]))\d{1,2}[.、)）](?!\d)|[（(]\d{1,2}[)）]|[①-⑳]", re.M)
CN_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}


@dataclass
class Options:
    size: int = 2000
    overlap: int = 200
    questions: int = 3           # per full-size chunk; shorter chunks get proportionally fewer (at least 1)
    paraphrases: int = 0         # extra phrasings per kept question, same answer
    judge: int | None = None     # keep only answers the teacher scores >= this (1-5); None = no judge
    min_len: int = 50
    max_len: int = 500
    dedupe: float = 0.8          # character-trigram Jaccard at or above which two questions are duplicates
    max_tokens: int | None = None  # cap on every stage's max_tokens

    def __post_init__(self) -> None:
        check_chunking(self.size, self.overlap)
        for flag, ok, rule in (("--questions", self.questions >= 1, "at least 1"), ("--paraphrases", self.paraphrases >= 0, "0 or more"),
                               ("--judge", self.judge is None or 1 <= self.judge <= 5, "1 to 5"),
                               ("--min-len", self.min_len >= 0, "0 or more"), ("--max-len", self.max_len >= max(1, self.min_len), "at least --min-len and 1"),
                               ("--max-tokens", self.max_tokens is None or self.max_tokens >= 1, "at least 1")):
            if not ok:
                raise DataError(f"{flag} must be {rule} (got {getattr(self, flag[2:].replace('-', '_'))})")


@dataclass
class Unit:
    source: str
    chunk_id: int
    heading: str
    text: str
    ocr: dict[str, Any] = field(default_factory=dict)  # ocr_engine and ocr_pages when its text comes from OCR'd pages

    @property
    def where(self) -> str:
        return f"{self.source}#{self.chunk_id}"

    @property
    def label(self) -> str:
        return f"来源：{self.source}，片段 {self.chunk_id}" + (f"，{self.heading}" if self.heading else "")


@dataclass
class QA:
    unit: Unit
    index: int
    question: str
    answer: str = ""
    status: str = "pending"      # kept, a filter reason, or failed:<stage>
    score: int | None = None
    paraphrases: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # the answer's numbers its chunk does not hold


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during the teacher requests; `cache` holds every answer finished so far."""

    def __init__(self, cache: Path):
        super().__init__(str(cache))
        self.cache = cache


def plan_chunks(source: Path, size: int, overlap: int, ocr: str = "rapidocr") -> tuple[list[Document], list[Unit], list[str]]:
    """(documents read, their chunks, what was skipped and why: unreadable files in a folder, pages without text)."""
    docs, skipped = read_documents(source, ocr)
    units = []
    for doc in docs:
        name = str(doc.path.relative_to(source)) if source.is_dir() else doc.path.name
        units += [Unit(name, c.index, c.heading, c.text, ocr_provenance(doc, c)) for c in doc.chunks(size, overlap)]
    return docs, units, skipped


def teacher_from_env(base_url: str | None = None, model: str | None = None, env_file: Path | None = ENV_FILE) -> EndpointConfig:
    """The teacher endpoint: VSLM_TEACHER_BASE_URL, _MODEL and _API_KEYS (or _API_KEY) from the environment or .env."""
    return endpoint_from_env(base_url, model, env_file, "VSLM_TEACHER", "datasets/FORMAT.md, Distilling documents")


def question_count(length: int, size: int, per_chunk: int) -> int:
    return min(per_chunk, max(1, math.ceil(per_chunk * length / size)))


def similarity(a: str, b: str) -> float:
    """Trigram Jaccard of two texts, case, spaces and punctuation ignored."""
    return jaccard(*(trigrams(re.sub(r"[\W_]+", "", t.lower())) for t in (a, b)))


def chunk_facts(text: str) -> set[str]:
    """Numbers, Latin terms and quoted/bracketed names of a chunk: an answer must carry at least one of them."""
    return set(NUMBER.findall(text)) | set(TERM.findall(text))


def carries_fact(answer: str, material: str) -> bool:
    numbers, terms = set(NUMBER.findall(material)), set(TERM.findall(material))
    if numbers or terms:  # whole numbers only: "1" does not match inside "100"
        return bool(set(NUMBER.findall(answer)) & numbers) or any(t in answer for t in terms)
    return any(answer[i:i + 6] in material for i in range(max(1, len(answer) - 5)))  # no facts to look for: share a phrase


def _cn_number(text: str) -> int:
    if not any(c in "十百千万亿" for c in text):  # written digit by digit: 二〇二五
        return int("".join(str(CN_DIGITS[c]) for c in text))
    total, section, digit = 0, 0, 0
    for c in text:
        if c in CN_DIGITS:
            digit = CN_DIGITS[c]
        elif c in "十百千":
            section += (digit or 1) * {"十": 10, "百": 100, "千": 1000}[c]
            digit = 0
        else:  # 万, 亿
            total = (total + section + digit) * (10_000 if c == "万" else 100_000_000)
            section = digit = 0
    return total + section + digit


def _normalise(text: str) -> str:
    """Full-width digits and letters to ASCII, thousands separators out, lower case (units compare so)."""
    text = re.sub(r"(?<=[０-９])[，,](?=[０-９]{3}(?![０-９]))", "", text)  # １，０００
    return re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text.translate(FULL_WIDTH)).lower()


def quantities(text: str, spelled: bool = False) -> list[tuple[Decimal, str | None, str]]:
    """(value, unit or None, as written) of each number in the text; 万/亿 scale the value. spelled=True also reads
    Chinese numerals that carry a unit (三十天, 第十四条)."""
    text = _normalise(text)
    found = []
    for m in QUANTITY.finditer(text):
        value = Decimal(m[1]) * {"万": 10_000, "亿": 100_000_000, None: 1}[m[2]]
        unit = m[3] or m[4]
        found.append((value, UNIT_SYNONYMS.get(unit, unit), m[0].strip()))
    if spelled:
        found += [(Decimal(_cn_number(m[1])), UNIT_SYNONYMS.get(m[2], m[2]), m[0]) for m in CN_QUANTITY.finditer(text)]
    return found


def unsupported_quantities(answer: str, material: str) -> list[str]:
    """The answer's numbers and quantities its material does not hold (list markers such as "1." aside). A number
    the material gives without a unit (a table cell) may carry any unit in the answer."""
    known = quantities(material, spelled=True)
    bare = {v for v, u, _ in known if u is None}
    values = {v for v, _, _ in known} | {Decimal(m) for m in re.findall(r"\d+(?:\.\d+)?", _normalise(material))}  # IPv6 too
    pairs = {(v, u) for v, u, _ in known}
    missing = []
    for value, unit, written in quantities(LIST_MARKER.sub(" ", answer)):
        if value not in values or (unit and (value, unit) not in pairs and value not in bare):
            if written not in missing:
                missing.append(written)
    return missing


def rule_filter(answer: str, material: str, min_len: int, max_len: int) -> str | None:
    """The guide's rules: a reason to drop the answer, or None."""
    if len(answer) < min_len:
        return "too_short"
    if len(answer) > max_len:
        return "too_long"
    if any(p.lower() in answer.lower() for p in REJECT):
        return "refusal"
    if unsupported_quantities(answer, material):
        return "unsupported_number"
    return None if carries_fact(answer, material) else "no_chunk_fact"


def parse_list(text: str) -> list[str] | None:
    """A JSON array of strings anywhere in the text; else question-like lines; None when nothing usable."""
    match = re.search(r"\[.*\]", text, re.S)
    if match:
        try:
            items = json.loads(match.group(0))
            if isinstance(items, list) and all(isinstance(i, str) for i in items):
                return [i.strip() for i in items if i.strip()]
        except json.JSONDecodeError:
            pass
    lines = [re.sub(r"^\s*(?:[-*•]|\d+[.、)）])\s*", "", l).strip() for l in text.splitlines()]
    lines = [l for l in lines if len(l) >= 5 and l[-1] in "?？"]
    return lines or None


def parse_score(text: str) -> int | None:
    return parse_verdict(text)[0]


class RequestCache(AnswerCache):
    """client.AnswerCache (a torn last line is cut before appending), whose `append` writes in a worker thread
    so the event loop keeps the other requests going."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.lock = threading.Lock()

    def _locked_add(self, *args: str) -> None:
        with self.lock:
            self.add(*args)

    async def append(self, key: str, row_id: str, model: str, answer: str) -> None:
        await asyncio.to_thread(self._locked_add, key, row_id, model, answer)


def prompt_fields(stage: str) -> set[str]:
    """The parameters a stage's prompt is written with (besides where/material/question)."""
    return {f for _, f, _, _ in string.Formatter().parse(PROMPTS[stage]) if f} - {"where", "material", "question"}


def cache_key(stage: str, chunk: str, question: str, model: str, extra: dict[str, Any]) -> str:
    blob = json.dumps([stage, chunk, question, model, extra, PROMPT_VERSION], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Run:
    def __init__(self, teacher: Endpoint, cache: RequestCache, opts: Options, bar: tqdm):
        self.teacher, self.cache, self.opts, self.bar = teacher, cache, opts, bar
        self.model = teacher.config.model
        self.records: list[QA] = []
        self.chunk_failures: Counter = Counter()
        self.paraphrase_failures = 0
        self.cached = 0
        self.errors: list[str] = []
        self.chunk_drops: list[dict[str, Any]] = []

    async def ask(self, stage: str, unit: Unit, question: str = "", usable: Callable[[str], bool] | None = None,
                  **fields: Any) -> str | None:
        """The teacher's answer, from the cache when it holds a usable one. An answer `usable` rejects (e.g. no JSON
        list) is not cached, so the next run asks again. Every prompt parameter is part of the cache key."""
        fields = {"min_len": self.opts.min_len, "max_len": self.opts.max_len, **fields}
        max_tokens = min(MAX_TOKENS[stage], self.opts.max_tokens or MAX_TOKENS[stage])
        extra = {k: fields[k] for k in prompt_fields(stage)} | {"max_tokens": max_tokens}
        key = cache_key(stage, unit.text, question, self.model, extra)
        cached = self.cache.done.get(key)
        if cached is not None and (usable is None or usable(cached)):
            self.cached += 1
            self.bar.update(1)
            return cached
        prompt = PROMPTS[stage].format(where=unit.label, material=unit.text, question=question, **fields)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        try:
            text = await self.teacher.chat(messages, max_tokens, TEMPERATURE[stage])
        except EndpointError as exc:
            self.errors.append(self.teacher.pool.mask(f"{stage} {unit.where}: {exc}"))
            return None
        finally:
            self.bar.update(1)
        if usable is None or usable(text):
            await self.cache.append(key, f"{stage}:{unit.where}:{question}", self.model, text)
        return text

    async def chunk(self, unit: Unit) -> None:
        n = question_count(len(unit.text), self.opts.size, self.opts.questions)
        raw = await self.ask("questions", unit, usable=lambda t: parse_list(t) is not None, n=n)
        questions = parse_list(raw) if raw is not None else None
        if questions is None:
            reason = "request_failed" if raw is None else "unparseable"
            self.chunk_failures[reason] += 1
            self.chunk_drops.append({"source": unit.source, "chunk_id": unit.chunk_id, "question": None,
                                     "reason": f"questions:{reason}"})
            if raw is not None:
                self.errors.append(f"questions {unit.where}: the teacher's answer is not a JSON list of questions (asked again next run)")
            return
        accepted: list[QA] = []
        for i, question in enumerate(questions[:n]):
            qa = QA(unit, i, question)
            self.records.append(qa)
            if META.search(question):
                qa.status = "meta_question"
            elif any(similarity(question, other.question) >= self.opts.dedupe for other in accepted):
                qa.status = "duplicate_question"
            else:
                accepted.append(qa)
        await asyncio.gather(*(self.qa(qa) for qa in accepted))

    async def qa(self, qa: QA) -> None:
        answer = await self.ask("answer", qa.unit, qa.question)
        if answer is None:
            qa.status = "failed:answer"
            return
        qa.answer = answer.strip()
        material = qa.unit.heading + "\n" + qa.unit.text
        reason = rule_filter(qa.answer, material, self.opts.min_len, self.opts.max_len)
        if reason:
            qa.status = reason
            if reason == "unsupported_number":
                qa.unsupported = unsupported_quantities(qa.answer, material)
            return
        if self.opts.judge is not None:
            raw = await self.ask("judge", qa.unit, qa.question, usable=lambda t: parse_score(t) is not None, answer=qa.answer)
            qa.score = parse_score(raw) if raw is not None else None
            if raw is None or qa.score is None or qa.score < self.opts.judge:
                qa.status = "failed:judge" if raw is None else "judge_unparseable" if qa.score is None else "judge_low"
                return
        qa.status = "kept"
        if self.opts.paraphrases:
            raw = await self.ask("paraphrase", qa.unit, qa.question, usable=lambda t: parse_list(t) is not None,
                                 n=self.opts.paraphrases)
            found = parse_list(raw) if raw is not None else None
            if found is None:
                self.paraphrase_failures += 1
                return
            for text in found:
                if len(qa.paraphrases) < self.opts.paraphrases and not META.search(text) and all(
                        similarity(text, seen) < self.opts.dedupe for seen in [qa.question, *qa.paraphrases]):
                    qa.paraphrases.append(text)


def _drop_cross_chunk_duplicates(records: list[QA], threshold: float) -> None:
    kept: list[QA] = []
    for qa in records:
        if qa.status != "kept":
            continue
        if any(similarity(qa.question, other.question) >= threshold for other in kept):
            qa.status = "duplicate_question"
        else:
            kept.append(qa)


def _rows(records: list[QA], model: str) -> list[dict[str, Any]]:
    rows = []
    for qa in records:
        if qa.status != "kept":
            continue
        base = {"input": "", "output": qa.answer, "source": qa.unit.source, "chunk_id": qa.unit.chunk_id, "teacher": model,
                "fact": f"{qa.unit.where}-q{qa.index}", **({"judge_score": qa.score} if qa.score is not None else {}), **qa.unit.ocr}
        rows.append({"instruction": qa.question, **base})
        rows += [{"instruction": p, **base, "paraphrase_of": qa.question} for p in qa.paraphrases]
    return rows


async def _distill(units: list[Unit], teacher_cfg: EndpointConfig, cache_path: Path, opts: Options, concurrency: int,
                   teacher_kw: dict[str, Any]) -> tuple[Run, Endpoint]:
    if cache_path.parent.exists() and not cache_path.parent.is_dir():
        raise DataError(f"--work {cache_path.parent} is a file; give a folder for the request cache, distilled rows and summary")
    teacher = Endpoint(teacher_cfg, concurrency=concurrency, **teacher_kw)
    try:
        await teacher.check()
        per_q = 1 + (opts.judge is not None) + (opts.paraphrases > 0)
        total = sum(1 + per_q * question_count(len(u.text), opts.size, opts.questions) for u in units)
        with tqdm(total=total, desc="distill", unit="req", dynamic_ncols=True) as bar:
            run = Run(teacher, RequestCache(cache_path), opts, bar)
            await asyncio.gather(*(run.chunk(u) for u in units))
            bar.total = bar.n  # the estimate assumed every question survives
    finally:
        await teacher.close()
    return run, teacher


def distill(source: Path, name: str, teacher: EndpointConfig, *, options: Options | None = None, concurrency: int = 8,
            work_dir: Path | None = None, out_dir: Path | None = None, registry_path: Path | None = None,
            replace: bool = False, teacher_kw: dict[str, Any] | None = None, ocr: str = "rapidocr") -> dict[str, Any]:
    """Run the whole distillation; returns the summary (also written to <work>/summary.json)."""
    opts = options or Options()
    precheck(name, out_dir, replace=replace, registry_path=registry_path, rerun_teacher=teacher.model)  # before any request
    cache = (work_dir or ROOT / "saves" / "distill") / "cache.jsonl"  # keys hash chunk/question/model, not the name
    work_dir = work_dir or ROOT / "saves" / "distill" / name
    docs, units, skipped = plan_chunks(Path(source), opts.size, opts.overlap, ocr)
    try:
        run, client = asyncio.run(_distill(units, teacher, cache, opts, concurrency, teacher_kw or {}))
    except KeyboardInterrupt:
        raise Interrupted(cache) from None
    order = {(u.source, u.chunk_id): i for i, u in enumerate(units)}
    run.records.sort(key=lambda qa: (order[(qa.unit.source, qa.unit.chunk_id)], qa.index))
    _drop_cross_chunk_duplicates(run.records, opts.dedupe)
    rows = _rows(run.records, teacher.model)
    statuses = Counter(qa.status for qa in run.records)
    distilled = work_dir / f"{name}_distilled.jsonl"
    atomic_write_jsonl(distilled, rows)
    dropped = sorted(_dropped(run), key=lambda d: order[(d["source"], d["chunk_id"])])
    atomic_write_jsonl(work_dir / "dropped.jsonl", dropped)
    summary: dict[str, Any] = {
        "documents": len(docs), "chunks": len(units), "chunk_size": opts.size, "chunk_overlap": opts.overlap,
        "chunk_failures": dict(run.chunk_failures), "questions": len(run.records), "kept": statuses.pop("kept", 0),
        "filtered": {k: v for k, v in sorted(statuses.items()) if not k.startswith("failed:")},
        "failed": {k.split(":", 1)[1]: v for k, v in sorted(statuses.items()) if k.startswith("failed:")},
        "paraphrases": sum(len(qa.paraphrases) for qa in run.records if qa.status == "kept"),
        "paraphrase_failures": run.paraphrase_failures, "rows": len(rows),
        "requests": {"sent": client.sent, "from_cache": run.cached}, "keys": client.pool.stats(),
        "teacher": teacher.model, "distilled": str(distilled), "dataset": {}, "errors": run.errors[:20],
        "skipped": skipped, "ocr": [d.ocr_note for d in docs if d.ocr_note], "dropped": {"file": str(work_dir / "dropped.jsonl"), "count": len(dropped),
                                        "first": [dropped_line(d) for d in dropped[:20]]},
    }
    if rows:
        report = convert(distilled, "distilled", name, out_dir, registry_path=registry_path, replace=replace)
        summary["dataset"] = report.files
    atomic_write_json(work_dir / "summary.json", summary)
    return summary


def _dropped(run: Run) -> list[dict[str, Any]]:
    """Every question that did not become a row, and every chunk that gave no questions, with the reason."""
    items = list(run.chunk_drops)
    for qa in run.records:
        if qa.status == "kept":
            continue
        item = {"source": qa.unit.source, "chunk_id": qa.unit.chunk_id, "question": qa.question, "reason": qa.status}
        if qa.unsupported:
            item["unsupported"] = qa.unsupported
        if qa.score is not None:
            item["judge_score"] = qa.score
        items.append(item | ({"answer": qa.answer} if qa.answer else {}))
    return items


def dropped_line(item: dict[str, Any]) -> str:
    why = item["reason"] + (f" ({', '.join(item['unsupported'])} not in the chunk)" if item.get("unsupported") else "")
    return f"{item['source']}#{item['chunk_id']} {why}" + (f": {item['question']}" if item.get("question") else "")


def summary_line(s: dict[str, Any]) -> str:
    filtered = ", ".join(f"{k} {v}" for k, v in s["filtered"].items()) or "none"
    failed = ", ".join(f"{k} {v}" for k, v in s["failed"].items()) or "none"
    chunk_failed = sum(s["chunk_failures"].values())
    skipped = f" ({len(s['skipped'])} file(s)/page(s) skipped, listed below)" if s.get("skipped") else ""
    if s.get("ocr"):
        skipped += f" ({len(s['ocr'])} with pages read by OCR: {'; '.join(s['ocr'])})"
    return (f"{s['documents']} document(s){skipped}, {s['chunks']} chunks ({chunk_failed} without questions), {s['questions']} questions: "
            f"kept {s['kept']}, filtered {sum(s['filtered'].values())} ({filtered}), failed {sum(s['failed'].values())} ({failed}); "
            f"{s['rows']} rows with {s['paraphrases']} paraphrases; requests sent {s['requests']['sent']}, "
            f"from cache {s['requests']['from_cache']}")

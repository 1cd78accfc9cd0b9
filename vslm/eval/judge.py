"""Optional LLM judge: a stronger model scores each free-text answer 1-5 against the reference answer and its
key facts, following a written rubric (eval/judge_rubric.md).

Configuration comes from the environment or `.env` (the environment wins), like the distillation teacher:
  VSLM_JUDGE_BASE_URL, VSLM_JUDGE_MODEL, VSLM_JUDGE_API_KEYS (comma-separated; unset for a local server)
When no VSLM_JUDGE_* is set the VSLM_TEACHER_* settings are used. Keys never reach logs, caches or reports.

Only QA, refusal and correction rows are judged (classification and extraction have exact metrics). Every verdict is
appended to a cache beside the answers', so a killed or failed run, run again, asks only what is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..core.errors import EndpointError
from .client import AnswerCache, prompt_of, request_key
from ..core.paths import ROOT, rel
from ..core.endpoint import ENV_FILE, Endpoint, EndpointConfig, endpoint_from_env, read_env_file

RUBRIC = ROOT / "eval" / "judge_rubric.md"
JUDGED_TASKS = ("qa", "refusal", "correction")
MAX_TOKENS = 200
PROMPT = ("请按评分标准给下面的待评答案打分，只输出 JSON：{{\"score\": 1 到 5 的整数, \"reason\": \"一句话理由\"}}\n\n"
          "【问题】\n{question}\n\n【参考答案】\n{reference}\n\n【关键事实】\n{facts}\n\n【待评答案】\n{answer}")
# vLLM structured outputs: compact JSON only (a JSON-schema grammar lets a weak judge pad with whitespace
# until max_tokens runs out), a reason short enough to always close within MAX_TOKENS.
VERDICT_PATTERN = r'\{"score": [1-5], "reason": "[^"\\\n]{0,80}"\}'


@dataclass
class JudgeSpec:
    config: EndpointConfig
    rubric: Path = RUBRIC
    structured: bool = False  # vLLM: constrain the verdict to VERDICT_PATTERN with structured outputs
    concurrency: int = 8

    def record(self) -> dict[str, Any]:
        """What a report says about the judge (never the keys)."""
        text = self.rubric.read_bytes()
        return {"base_url": self.config.base_url, "model": self.config.model, "rubric": rel(self.rubric),
                "rubric_sha256": hashlib.sha256(text).hexdigest()[:16], "structured": self.structured, "temperature": 0.0}


def judge_from_env(base_url: str | None = None, model: str | None = None, rubric: Path | None = None,
                   structured: bool = False, concurrency: int = 8, env_file: Path | None = ENV_FILE) -> JudgeSpec:
    env = {**(read_env_file(env_file) if env_file else {}), **os.environ}
    own = base_url or model or any(k.startswith("VSLM_JUDGE_") and v for k, v in env.items())
    teacher = any(k.startswith("VSLM_TEACHER_") and v for k, v in env.items())
    prefix = "VSLM_JUDGE" if own or not teacher else "VSLM_TEACHER"
    config = endpoint_from_env(base_url, model, env_file, prefix, "README.md, Evaluation: LLM judge")
    rubric = Path(rubric) if rubric else RUBRIC
    if not rubric.is_file():
        raise EndpointError(f"judge rubric {rubric} not found — pass --judge-rubric with a Markdown rubric (see {rel(RUBRIC)})")
    return JudgeSpec(config, rubric, structured, concurrency)


def parse_verdict(text: str) -> tuple[int | None, str]:
    """(score 1-5 or None, reason) from the first JSON object in the text."""
    match = re.search(r"\{.*\}", text, re.S)
    try:
        item = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        item = None
    if not isinstance(item, dict):
        return None, ""
    score, reason = item.get("score"), str(item.get("reason", ""))[:200]
    if isinstance(score, str) and score.strip().isdigit():
        score = int(score.strip())
    ok = isinstance(score, (int, float)) and not isinstance(score, bool) and score == int(score) and 1 <= score <= 5
    return (int(score) if ok else None), reason


def judge_messages(row: dict[str, Any], answer: str, rubric: str) -> list[dict[str, str]]:
    facts = "\n".join(f"- {f}" for f in row.get("key_facts") or []) or "（未列出，以参考答案为准）"
    prompt = PROMPT.format(question=prompt_of(row), reference=row["output"], facts=facts, answer=answer or "（空答案）")
    return [{"role": "system", "content": rubric}, {"role": "user", "content": prompt}]


async def _judge_all(todo: list[tuple[str, list[dict[str, str]], str]], spec: JudgeSpec, cache: AnswerCache,
                     bar: tqdm) -> list[BaseException | None]:
    endpoint = Endpoint(spec.config, concurrency=spec.concurrency)
    extra = {"structured_outputs": {"regex": VERDICT_PATTERN}} if spec.structured else None

    async def one(row_id: str, messages: list[dict[str, str]], key: str) -> None:
        text = await endpoint.chat(messages, MAX_TOKENS, 0.0, extra)
        cache.add(key, row_id, spec.config.model, text)
        bar.update(1)

    try:
        await endpoint.check()
        return await asyncio.gather(*(one(*t) for t in todo), return_exceptions=True)
    finally:
        await endpoint.close()


def judge_answers(rows: list[dict[str, Any]], answers: dict[str, str], spec: JudgeSpec, cache_path: Path,
                  label: str = "") -> dict[str, dict[str, Any]]:
    """{row id: {"judge_score": 1-5 or None (unparseable verdict), "judge_reason": str}} for judged rows."""
    rubric = spec.rubric.read_text(encoding="utf-8")
    cache = AnswerCache(cache_path)
    jobs = []
    for row in rows:
        if row.get("task", "qa") in JUDGED_TASKS:
            messages = judge_messages(row, answers[row["id"]], rubric)
            jobs.append((row["id"], messages, request_key(spec.config.model, messages, {"structured": spec.structured})))
    todo = [job for job in jobs if job[2] not in cache.done]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"judge {label}".strip(), unit="q", dynamic_ncols=True) as bar:
        results = asyncio.run(_judge_all(todo, spec, cache, bar)) if todo else []
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise EndpointError(f"{len(failures)} of {len(todo)} judge requests to {spec.config.base_url} failed ({failures[0]}); "
                            f"{len(jobs) - len(failures)} finished verdicts are kept in {cache_path} and will not be asked again")
    verdicts = {}
    for row_id, _, key in jobs:
        score, reason = parse_verdict(cache.done[key])
        verdicts[row_id] = {"judge_score": score, "judge_reason": reason}
    return verdicts

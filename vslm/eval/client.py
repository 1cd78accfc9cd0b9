"""Batch client for any OpenAI-compatible endpoint: greedy, bounded concurrency, a resumable answer cache; the requests,
retries and back-off are core.endpoint's `Endpoint`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..core.endpoint import Endpoint, EndpointConfig, RequestFailed, check_endpoint
from ..core.errors import EndpointError, RecipeError
from ..core.jsonio import json_records


def prompt_of(row: dict[str, Any]) -> str:
    return row["instruction"] + ("\n" + row["input"] if row.get("input") else "")


def messages_of(row: dict[str, Any], system: str | None) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    for user, assistant in row.get("history") or []:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return msgs + [{"role": "user", "content": prompt_of(row)}]


def request_key(model: str, messages: list[dict[str, str]], settings: dict[str, Any]) -> str:
    blob = json.dumps([model, messages, settings], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class AnswerCache:
    """Append-only JSONL of finished answers; a torn last line (killed mid-write) is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, str] = {}
        if path.is_file():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):  # cut a torn last line so the next append starts clean
                data = data[: data.rfind(b"\n") + 1]
                with path.open("r+b") as handle:
                    handle.truncate(len(data))
                    os.fsync(handle.fileno())
            for _, item in json_records(path):
                try:
                    self.done[item["key"]] = item["answer"]
                except (KeyError, TypeError):  # a bad line (DataError) or a record of another shape: asked again
                    continue

    def add(self, key: str, row_id: str, model: str, answer: str) -> None:
        self.done[key] = answer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "id": row_id, "model": model, "answer": answer}, ensure_ascii=False) + "\n")
            handle.flush()  # in the OS's hands: survives a killed process (fsync per answer would cap throughput)


async def _ask_all(base_url: str, model: str, rows: list[dict[str, Any]], system: str | None, cache: AnswerCache,
                   settings: dict[str, Any], concurrency: int, api_key: str, extra_body: dict[str, Any],
                   per_row_extra: list[dict[str, Any] | None], label: str) -> dict[str, str]:
    # the one HTTP stack (core.endpoint): its retries and back-off; no cool-down, so a 429 waits only for its Retry-After
    endpoint = Endpoint(EndpointConfig(base_url, model, [api_key], "VSLM_EVAL", keys_from="VSLM_API_KEY or OPENAI_API_KEY"),
                        concurrency=concurrency, attempts=settings.get("retries", 4), timeout=settings.get("timeout", 300),
                        cooldown=0)
    answers: dict[str, str] = {}
    todo = []
    for row, extra in zip(rows, per_row_extra):
        msgs = messages_of(row, system)
        key = request_key(model, msgs, {**settings, "extra": {**extra_body, **(extra or {})}})
        if key in cache.done:
            answers[row["id"]] = cache.done[key]
        else:
            todo.append((row, msgs, key, extra))
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"eval {label}", unit="q", dynamic_ncols=True)

    async def one(row, msgs, key, extra):
        answer = await endpoint.chat(msgs, max_tokens=settings["max_tokens"], temperature=settings["temperature"],
                                     top_p=settings["top_p"], extra_body={**extra_body, **(extra or {})} or None)
        cache.add(key, row["id"], model, answer)
        answers[row["id"]] = answer
        bar.update(1)

    try:
        results = await asyncio.gather(*(one(*t) for t in todo), return_exceptions=True)
    finally:
        bar.close()
        await endpoint.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        first = failures[0]
        detail = first.reason if isinstance(first, RequestFailed) else str(first) if isinstance(first, EndpointError) else type(first).__name__
        raise EndpointError(f"{len(failures)} of {len(todo)} requests to {base_url} failed ({detail}); "
                            f"{len(answers)} finished answers are kept in {cache.path} and will not be asked again")
    return answers


def ask_all(base_url: str, model: str, rows: list[dict[str, Any]], *, system: str | None, cache_path: Path,
            max_tokens: int = 256, concurrency: int = 8, api_key: str | None = None, extra_body: dict[str, Any] | None = None,
            per_row_extra: list[dict[str, Any] | None] | None = None, strict_model: bool = True, label: str = "") -> dict[str, str]:
    """Answers by row id. Every finished answer is on disk before the next is counted."""
    if concurrency < 1 or max_tokens < 1:  # a zero-slot semaphore would wait forever
        raise RecipeError(f"concurrency and max_tokens must be 1 or more (got {concurrency} and {max_tokens})")
    api_key = api_key or os.environ.get("VSLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
    check_endpoint(base_url, model, api_key, strict_model)
    settings = {"max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0}
    return asyncio.run(_ask_all(base_url, model, rows, system, AnswerCache(cache_path), settings, concurrency, api_key,
                                extra_body or {}, per_row_extra or [None] * len(rows), label or model))

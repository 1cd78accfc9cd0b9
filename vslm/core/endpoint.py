"""The HTTP stack for OpenAI-compatible endpoints: the distillation teacher, the LLM judge and the served models under
evaluation. `Endpoint` calls one with one or several API keys in rotation, with the one retry/back-off path.

Configuration comes from the environment or `.env` (the environment wins), under a prefix (VSLM_TEACHER, VSLM_JUDGE):
  <prefix>_BASE_URL   e.g. https://api.example.com/v1
  <prefix>_MODEL      e.g. qwen-max
  <prefix>_API_KEYS   one or more keys, comma-separated (<prefix>_API_KEY for a single one)

Keys are never printed, logged, cached or put into exception messages: a key is named `key#1`, `key#2`...
A key that gets HTTP 429/401/403 rests for the time the server's Retry-After asks (capped), else for a cool-down;
each rest is shown on stderr. The least-failed rested key is preferred; when every key was rejected (401/403)
requests fail at once instead of waiting. At start-up the model must be in the endpoint's /models list (when
that list is readable).
"""

from __future__ import annotations

import asyncio
import difflib
import email.utils
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from openai import (APIConnectionError, APIStatusError, APITimeoutError, AsyncOpenAI, AuthenticationError,
                    InternalServerError, PermissionDeniedError, RateLimitError)
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from .errors import EndpointError
from .paths import ROOT

ENV_FILE = ROOT / ".env"
REST_STATUSES = (401, 403, 429)
MAX_RETRY_AFTER = 600.0  # a server asking for a longer rest is not waited for beyond this


class RequestFailed(EndpointError):
    """A chat request failed; `reason` says how in a few words (HTTP 500, timed out ...), without the key's name."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class Retryable(RequestFailed):
    """A failure worth another attempt (with another key, after a back-off)."""


def read_env_file(path: Path) -> dict[str, str]:
    """A tiny .env parser: KEY=VALUE lines, optional `export `, quotes and # comments."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) > 1:
            value = value[1:-1]
        else:
            value = "" if value.startswith("#") else value.split(" #", 1)[0].strip()
        values[name.strip()] = value
    return values


@dataclass
class EndpointConfig:
    base_url: str
    model: str
    keys: list[str]
    env_prefix: str = "VSLM_TEACHER"  # where the settings came from, for error messages
    keys_from: str = ""  # where the keys came from, for error messages (default <env_prefix>_API_KEYS)

    def __post_init__(self) -> None:
        self.keys_from = self.keys_from or f"{self.env_prefix}_API_KEYS"

    def __repr__(self) -> str:  # never show the keys
        return f"EndpointConfig(base_url={self.base_url!r}, model={self.model!r}, keys=<{len(self.keys)} masked>)"


def endpoint_from_env(base_url: str | None, model: str | None, env_file: Path | None, prefix: str, docs: str) -> EndpointConfig:
    """<prefix>_BASE_URL, <prefix>_MODEL and <prefix>_API_KEYS (or _API_KEY) from the environment or .env."""
    env = {**(read_env_file(env_file) if env_file else {}), **os.environ}
    base_url = base_url or env.get(f"{prefix}_BASE_URL")
    model = model or env.get(f"{prefix}_MODEL")
    keys = [k.strip() for k in (env.get(f"{prefix}_API_KEYS") or env.get(f"{prefix}_API_KEY") or "").split(",") if k.strip()]
    missing = [n for n, v in ((f"{prefix}_BASE_URL", base_url), (f"{prefix}_MODEL", model)) if not v]
    if missing:
        raise EndpointError(f"set {' and '.join(missing)} in the environment or .env (see {docs})")
    return EndpointConfig(base_url.rstrip("/"), model, keys or ["EMPTY"], prefix)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a response's retry-after-ms / Retry-After (seconds or an HTTP date) asks to wait; None if it does not."""
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def served_models(body: Any, strict: bool = False) -> list[str] | None:
    """Model ids of a /models answer, None when unreadable. strict: only the OpenAI shape {"data": [{"id": ...}, ...]}
    (what a server under evaluation must give); otherwise a bare list of ids or objects is read too (teachers, judges)."""
    if strict:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
            return None
        return [m["id"] for m in data]
    items = body.get("data") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return None
    ids = [i.get("id") if isinstance(i, dict) else i for i in items]
    ids = [i for i in ids if isinstance(i, str)]
    return ids if ids or not items else None


def describe_body(resp: httpx.Response) -> str:
    """What came back, in a few words for a message: an HTML page, a JSON list, ..."""
    text = resp.content[:512].decode("utf-8", errors="replace").lstrip()
    if "html" in resp.headers.get("content-type", "") or text[:1] == "<":
        return "an HTML page"
    try:
        body = resp.json()
    except ValueError:
        return "text that is not JSON" if text else "an empty body"
    if isinstance(body, dict):
        return "a JSON object without a `data` list of models"
    return "a JSON " + {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(body), "null")


def check_endpoint(base_url: str, model: str, api_key: str, strict_model: bool) -> list[str]:
    try:
        resp = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise EndpointError(f"cannot reach {base_url} ({type(exc).__name__}) — start a server with `vslm serve <recipe>` or fix --base-url") from None
    if resp.status_code != 200:
        raise EndpointError(f"{base_url}/models answered HTTP {resp.status_code} — check --base-url and the API key")
    try:
        served = served_models(resp.json(), strict=True)
    except ValueError:  # JSONDecodeError, or bytes that are not text
        served = None
    if served is None:
        raise EndpointError(f"{base_url}/models answered HTTP 200 but not an OpenAI-compatible /models answer "
                            f"({describe_body(resp)}) — check --base-url: it must be the server's OpenAI API root, usually ending in /v1")
    if strict_model and model not in served:
        raise EndpointError(f"model `{model}` is not served at {base_url}; it serves: {', '.join(served) or 'nothing'}")
    return served


def show(message: str) -> None:
    """One line on stderr, above a running progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


@dataclass
class KeyState:
    name: str
    failures: int = 0
    requests: int = 0
    resting_until: float = 0.0
    rests: int = 0
    rejected: bool = False  # its last answer was 401/403


@dataclass
class KeyPool:
    """Picks the least-failed key that is not resting (ties: the least used); all resting: waits for the first."""
    keys: list[str]
    cooldown: float = 30.0
    env_prefix: str = "VSLM_TEACHER"
    notify: Callable[[str], None] = show
    keys_from: str = ""  # default <env_prefix>_API_KEYS
    states: list[KeyState] = field(init=False)

    def __post_init__(self) -> None:
        self.keys_from = self.keys_from or f"{self.env_prefix}_API_KEYS"
        if not self.keys:
            raise EndpointError(f"no API keys given ({self.keys_from})")
        self.states = [KeyState(f"key#{i + 1}") for i in range(len(self.keys))]

    async def pick(self) -> int:
        while True:
            if all(s.rejected for s in self.states):
                raise EndpointError(f"every API key was rejected (HTTP 401/403) — check {self.keys_from} ({len(self.keys)} key(s))")
            now = time.monotonic()
            ready = [i for i, s in enumerate(self.states) if s.resting_until <= now]
            if ready:
                best = min(ready, key=lambda i: (self.states[i].failures, self.states[i].requests))
                self.states[best].requests += 1
                return best
            await asyncio.sleep(max(0.01, min(s.resting_until for s in self.states) - now))

    def failed(self, index: int, status: int | None, wait: float | None = None) -> None:
        """Count a failure; on 429/401/403 rest the key for `wait` (the server's Retry-After, capped) or the cool-down."""
        state = self.states[index]
        state.failures += 1
        if status in REST_STATUSES:
            rest = min(wait, MAX_RETRY_AFTER) if wait is not None else self.cooldown
            now = time.monotonic()
            if state.resting_until <= now and rest > 0:  # say so once per rest, not once per request that ran into it
                why = "Retry-After" if wait is not None else f"cool-down, --cooldown {self.cooldown:g}"
                self.notify(f"{self.env_prefix.removeprefix('VSLM_').lower()}: HTTP {status} with {state.name}; "
                            f"it rests {rest:.3g} s ({why})")
            state.rests += 1
            state.resting_until = max(state.resting_until, now + rest)
            state.rejected = status in (401, 403)

    def succeeded(self, index: int) -> None:
        self.states[index].rejected = False

    def mask(self, text: str) -> str:
        for key, state in zip(self.keys, self.states):
            if key and key != "EMPTY":
                text = text.replace(key, state.name)
        return text

    def stats(self) -> dict[str, dict[str, int]]:
        return {s.name: {"requests": s.requests, "failures": s.failures, "rests": s.rests} for s in self.states}


class Endpoint:
    """chat(messages) -> text, with key rotation, bounded concurrency and retries with exponential back-off."""

    def __init__(self, config: EndpointConfig, *, concurrency: int = 8, attempts: int = 5, timeout: float = 120,
                 cooldown: float = 30.0, backoff: tuple[float, float] = (0.5, 8.0), strict_model: bool = True):
        for flag, value, ok, rule in (("--concurrency", concurrency, concurrency >= 1, "at least 1"),
                                      ("--attempts", attempts, attempts >= 1, "at least 1"),
                                      ("--timeout", timeout, timeout > 0, "more than 0"), ("--cooldown", cooldown, cooldown >= 0, "0 or more")):
            if not ok:
                raise EndpointError(f"{flag} must be {rule} (got {value:g})")
        self.config = config
        self.pool = KeyPool(config.keys, cooldown, config.env_prefix, keys_from=config.keys_from)
        first = AsyncOpenAI(base_url=config.base_url, api_key=config.keys[0], max_retries=0, timeout=timeout)
        self.clients = [first] + [first.with_options(api_key=k) for k in config.keys[1:]]  # one connection pool
        self.sem = asyncio.Semaphore(concurrency)
        self.attempts, self.backoff, self.sent, self.strict_model = attempts, backoff, 0, strict_model

    async def check(self) -> None:
        """Fail at once, clearly, when nothing answers at the base URL, or when its /models list (if it can be read:
        any other HTTP answer lets the requests tell) does not hold the model."""
        cfg, role = self.config, self.config.env_prefix.removeprefix("VSLM_").lower()
        try:
            body = await self.clients[0].get("/models", cast_to=object, options={"timeout": 10})
        except APIConnectionError as exc:
            raise EndpointError(f"cannot reach the {role} at {cfg.base_url} ({type(exc).__name__}) — "
                               f"check {cfg.env_prefix}_BASE_URL") from None
        except Exception:
            return
        served = served_models(body)
        if served is None or cfg.model in served or not self.strict_model:
            return
        close = difflib.get_close_matches(cfg.model, served, n=1)
        listed = ", ".join(served[:12]) + (f" … ({len(served)} in all)" if len(served) > 12 else "") or "no model"
        raise EndpointError(f"{role} model `{cfg.model}` is not served at {cfg.base_url}; it serves: {listed}"
                           f"{f' (did you mean `{close[0]}`?)' if close else ''} — set {cfg.env_prefix}_MODEL"
                           + (" or --model (--any-model skips this check)" if role == "teacher" else f" or --{role}-model"))

    async def _once(self, messages: list[dict[str, str]], max_tokens: int, sampling: dict[str, Any],
                    extra_body: dict | None = None) -> str:
        index = await self.pool.pick()
        name = self.pool.states[index].name

        def retry(reason: str, status: int | None = None, wait: float | None = None) -> Retryable:
            self.pool.failed(index, status, wait)
            return Retryable(f"{reason} with {name}", reason)

        self.sent += 1
        try:
            resp = await self.clients[index].chat.completions.create(
                model=self.config.model, messages=messages, max_tokens=max_tokens, extra_body=extra_body, **sampling)
        except (RateLimitError, AuthenticationError, PermissionDeniedError, InternalServerError) as exc:
            raise retry(f"HTTP {exc.status_code}", exc.status_code,
                        retry_after(exc.response.headers) if exc.status_code == 429 else None) from None
        except APITimeoutError:
            raise retry("timed out") from None
        except APIConnectionError:
            raise retry("connection failed") from None
        except APIStatusError as exc:
            raise RequestFailed(f"HTTP {exc.status_code} with {name}", f"HTTP {exc.status_code}") from None
        except Exception as exc:  # a 200 whose body is not JSON (a proxy hiccup): worth another try; the message may quote the request: drop it
            raise retry(f"unreadable response ({type(exc).__name__})") from None
        try:
            text = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):  # e.g. an HTML page served with HTTP 200
            raise retry(f"response without a message ({type(resp).__name__})") from None
        self.pool.succeeded(index)
        return text

    async def chat(self, messages: list[dict[str, str]], max_tokens: int = 512, temperature: float = 0.0,
                   extra_body: dict | None = None, top_p: float | None = None) -> str:
        """The answer's text; RequestFailed after the last attempt (its `reason` without the key's name)."""
        sampling = {"temperature": temperature, **({"top_p": top_p} if top_p is not None else {})}
        async with self.sem:
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.attempts), reraise=True, retry=retry_if_exception_type(Retryable),
                    wait=wait_exponential(min=self.backoff[0], max=self.backoff[1]),
                ):
                    with attempt:
                        return await self._once(messages, max_tokens, sampling, extra_body)
            except Retryable as exc:
                raise RequestFailed(f"{exc} (gave up after {self.attempts} attempts)", exc.reason) from None
        raise EndpointError("no attempt was made")  # unreachable

    async def close(self) -> None:
        await self.clients[0].close()  # the others share its connection pool

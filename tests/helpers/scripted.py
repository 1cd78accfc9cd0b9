"""A scripted OpenAI-compatible server for tests and benchmarks (real HTTP on loopback).

    python tests/helpers/scripted.py --port 8123 --config script.json

script.json keys (all optional):
  models:        served model ids (default ["base", "scripted"])
  latency_ms:    delay before every answer
  statuses:      HTTP statuses for the first requests, in order (e.g. [429, 500]); then 200
  fail_keys:     list of substrings; a request whose last user message contains one gets HTTP 500, always
  hang_keys:     substrings whose requests never answer (client timeout)
  malformed_keys: substrings whose requests get a 200 with a non-JSON body
  answers:       {substring: answer}; first match wins; else `default` ("echo" repeats the user message)
  request_log:   JSONL file; each request's last user message and model is appended (to count re-requests),
                 with `auth`, a short SHA-256 of the bearer key (never the key itself)
  statuses may also hold "hang": that request never answers (client timeout), later ones do; "malformed": a 200
                 whose body is not JSON; "html": a 200 with an HTML page (a proxy's or login page)
  retry_after:   value of the Retry-After header sent with every scripted error status (e.g. "1")
  models_body:   what GET /v1/models answers: "html" (a 200 HTML page) or "list" (a bare JSON list of ids);
                 default the OpenAI shape {"object": "list", "data": [{"id": ...}]}
  key_statuses:  {substring of the API key: HTTP status}; requests with such a key always get it (e.g. 429, 401)
  bad_json_keys: substrings whose requests get a 200 whose *content* is not the JSON the prompt asked for
  judge:         true = answer vslm.eval.judge's prompts: score = 1 + 4 x (share of 【关键事实】 found in 【待评答案】)
  teacher:       true = answer vslm.data.distill's prompts (任务：出题/作答/评分/改写) from the 【资料】 in the prompt
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

HTML_PAGE = "<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Please sign in</h1></body></html>"


def _section(prompt: str, name: str) -> str:
    match = re.search(rf"【{name}】[^\n]*\n(.*?)(?=\n【|\Z)", prompt, re.S)
    return match.group(1).strip() if match else ""


def teacher_answer(prompt: str) -> str:
    """A deterministic stand-in teacher for vslm.data.distill: questions quote a sentence of the material,
    answers are that sentence and what follows it, judges score 5, paraphrases reword the question."""
    task = (re.search(r"任务：(\S+)", prompt) or [None, ""])[1]
    count = int((re.search(r"(\d+) ?(?:个|种)", prompt) or [None, "3"])[1])
    material = _section(prompt, "资料")
    question = _section(prompt, "问题")
    sentences = [s.strip() for s in re.split(r"(?<=[。！？；])|\n", material) if len(s.strip()) >= 12]
    if task == "出题":
        picks = [sentences[(i * len(sentences)) // count] for i in range(min(count, len(sentences)))]
        return json.dumps([f"关于“{s[:20]}”，具体规定是什么？" for s in picks], ensure_ascii=False)
    quoted = (re.search(r"“(.+?)”", question) or [None, ""])[1]
    if task == "作答":
        start = material.find(quoted) if quoted else -1
        if start < 0:
            return "不清楚。"
        end = start + 60
        while end < len(material) and material[end - 1] not in "。！？；\n":
            end += 1
        return material[start:end].strip()[:480]
    if task == "评分":
        answer = _section(prompt, "答案")
        return json.dumps({"score": 5 if answer[:10] in material else 2, "reason": "scripted"}, ensure_ascii=False)
    if task == "改写":
        forms = ["“{q}”这一条是怎么规定的？", "能否说明一下{q}的具体要求？", "我想了解{q}方面的规定，请详细说说。", "{q}有什么要求？"]
        return json.dumps([forms[i % len(forms)].format(q=quoted or question) for i in range(count)], ensure_ascii=False)
    return prompt


def judge_answer(prompt: str) -> str:
    """A deterministic stand-in judge: the share of listed key facts that the answer contains, on 1-5."""
    facts = [line[2:].strip() for line in _section(prompt, "关键事实").splitlines() if line.startswith("- ")]
    answer = _section(prompt, "待评答案")
    found = sum(f in answer for f in facts) / len(facts) if facts else float(answer == _section(prompt, "参考答案"))
    return json.dumps({"score": 1 + round(4 * found), "reason": f"{found:.0%} of the key facts"}, ensure_ascii=False)


def create_app(script: dict) -> FastAPI:
    app = FastAPI()
    state = {"n": 0}
    models = script.get("models", ["base", "scripted"])

    @app.get("/v1/models")
    async def list_models():
        shape = script.get("models_body")
        if shape == "html":
            return HTMLResponse(HTML_PAGE)
        if shape == "list":
            return JSONResponse(list(models))
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "scripted"} for m in models]}

    def failure(status: int, message: str) -> JSONResponse:
        headers = {"Retry-After": str(script["retry_after"])} if script.get("retry_after") is not None else None
        return JSONResponse({"error": {"message": message}}, status_code=status, headers=headers)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        user = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        state["n"] += 1
        n = state["n"]
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if script.get("request_log"):
            auth = hashlib.sha256(key.encode()).hexdigest()[:12]
            with open(script["request_log"], "a", encoding="utf-8") as log:
                log.write(json.dumps({"n": n, "model": body.get("model"), "user": user, "auth": auth}, ensure_ascii=False) + "\n")
        if script.get("latency_ms"):
            await asyncio.sleep(script["latency_ms"] / 1000)
        statuses = script.get("statuses", [])
        if n <= len(statuses) and statuses[n - 1] == "hang":
            await asyncio.sleep(3600)
        if n <= len(statuses) and statuses[n - 1] == "malformed":
            return PlainTextResponse("{not json", media_type="application/json")
        if n <= len(statuses) and statuses[n - 1] == "html":
            return HTMLResponse(HTML_PAGE)
        if n <= len(statuses) and statuses[n - 1] != 200:
            return failure(statuses[n - 1], "scripted failure")
        for part, status in script.get("key_statuses", {}).items():
            if part and part in key:
                return failure(status, f"scripted HTTP {status} for this key")
        if body.get("model") not in models:
            return JSONResponse({"error": {"message": f"model {body.get('model')} not found"}}, status_code=404)
        if any(k in user for k in script.get("fail_keys", [])):
            return JSONResponse({"error": {"message": "scripted failure"}}, status_code=500)
        if any(k in user for k in script.get("hang_keys", [])):
            await asyncio.sleep(3600)
        if any(k in user for k in script.get("malformed_keys", [])):
            return PlainTextResponse("{not json", media_type="application/json")
        answer = next((a for k, a in script.get("answers", {}).items() if k in user), script.get("default", "echo"))
        if answer == "echo":
            answer = user
        if script.get("teacher"):
            answer = teacher_answer(user)
        if script.get("judge") and "【待评答案】" in user:
            answer = judge_answer(user)
        if any(k in user for k in script.get("bad_json_keys", [])):
            answer = "好的，下面是我的回答：（这里不是 JSON）"
        return {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args()
    script = json.loads(args.config.read_text(encoding="utf-8")) if args.config else {}
    uvicorn.run(create_app(script), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=2)  # hung requests must not hold up a stop


if __name__ == "__main__":
    main()

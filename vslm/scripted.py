"""A scripted OpenAI-compatible server for tests and benchmarks (real HTTP on loopback).

    python -m vslm.scripted --port 8123 --config script.json

script.json keys (all optional):
  models:        served model ids (default ["base", "scripted"])
  latency_ms:    delay before every answer
  statuses:      HTTP statuses for the first requests, in order (e.g. [429, 500]); then 200
  fail_keys:     list of substrings; a request whose last user message contains one gets HTTP 500, always
  hang_keys:     substrings whose requests never answer (client timeout)
  malformed_keys: substrings whose requests get a 200 with a non-JSON body
  answers:       {substring: answer}; first match wins; else `default` ("echo" repeats the user message)
  request_log:   JSONL file; each request's last user message and model is appended (to count re-requests)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse


def create_app(script: dict) -> FastAPI:
    app = FastAPI()
    state = {"n": 0}
    models = script.get("models", ["base", "scripted"])

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "scripted"} for m in models]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        user = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        state["n"] += 1
        n = state["n"]
        if script.get("request_log"):
            with open(script["request_log"], "a", encoding="utf-8") as log:
                log.write(json.dumps({"n": n, "model": body.get("model"), "user": user}, ensure_ascii=False) + "\n")
        if script.get("latency_ms"):
            await asyncio.sleep(script["latency_ms"] / 1000)
        statuses = script.get("statuses", [])
        if n <= len(statuses) and statuses[n - 1] != 200:
            return JSONResponse({"error": {"message": "scripted failure"}}, status_code=statuses[n - 1])
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
    uvicorn.run(create_app(script), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

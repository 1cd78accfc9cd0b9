"""The batch client against a real scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import requests

from vslm.client import EndpointError, ask_all
from vslm.serve import free_port

ROWS = [{"id": f"r{i}", "instruction": f"问题{i}", "input": ""} for i in range(12)]


@pytest.fixture
def scripted(scripted_server):
    return scripted_server


def test_answers_come_back_by_id_and_in_the_cache(scripted, tmp_path):
    server = scripted(default="echo")
    answers = ask_all(server.base_url, "base", ROWS, system="sys", cache_path=tmp_path / "c.jsonl", concurrency=4)
    assert answers == {r["id"]: r["instruction"] for r in ROWS}
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 12


def test_retries_429_and_500_then_succeeds(scripted, tmp_path):
    server = scripted(statuses=[429, 500, 500])
    answers = ask_all(server.base_url, "base", ROWS[:3], system=None, cache_path=tmp_path / "c.jsonl", concurrency=1)
    assert len(answers) == 3
    assert len(requests(server)) == 6  # three failures retried


def test_persistent_500_keeps_finished_answers_and_resume_asks_nothing_twice(scripted, tmp_path):
    bad = scripted(fail_keys=["问题7"])
    cache = tmp_path / "c.jsonl"
    with pytest.raises(EndpointError, match=r"1 of 12 requests .* failed \(HTTP 500\); 11 finished answers are kept"):
        ask_all(bad.base_url, "base", ROWS, system=None, cache_path=cache, concurrency=4)
    assert len(cache.read_text().splitlines()) == 11
    good = scripted()
    answers = ask_all(good.base_url, "base", ROWS, system=None, cache_path=cache, concurrency=4)
    assert len(answers) == 12
    assert [r["user"] for r in requests(good)] == ["问题7"], "only the unfinished question is asked again"


def test_killed_run_resumes_without_re_asking(scripted, tmp_path):
    server = scripted(latency_ms=150)
    cache = tmp_path / "c.jsonl"
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(ROWS, ensure_ascii=False))
    code = (f"import json; from vslm.client import ask_all; from pathlib import Path; "
            f"ask_all({server.base_url!r}, 'base', json.load(open({str(rows_file)!r})), system=None, "
            f"cache_path=Path({str(cache)!r}), concurrency=1)")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 4):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {json.loads(l)["id"] for l in cache.read_text().splitlines() if l.strip()}
    assert 4 <= len(done) < 12
    before = len(requests(server))
    answers = ask_all(server.base_url, "base", ROWS, system=None, cache_path=cache, concurrency=4)
    assert len(answers) == 12
    asked_again = [r["user"] for r in requests(server)[before:]]
    assert not set(asked_again) & {f"问题{i[1:]}" for i in done}, "finished answers must not be requested again"


def test_unreachable_server_is_a_clear_error(tmp_path):
    port = free_port()
    with pytest.raises(EndpointError, match=rf"cannot reach http://127.0.0.1:{port}/v1 .*vslm serve"):
        ask_all(f"http://127.0.0.1:{port}/v1", "base", ROWS, system=None, cache_path=tmp_path / "c.jsonl")


def test_wrong_model_name_is_a_clear_error(scripted, tmp_path):
    server = scripted(models=["base", "telecom_r32"])
    with pytest.raises(EndpointError, match=r"model `telecom_r23` is not served .* it serves: base, telecom_r32"):
        ask_all(server.base_url, "telecom_r23", ROWS, system=None, cache_path=tmp_path / "c.jsonl")


def test_malformed_json_answer_fails_cleanly_and_keeps_the_rest(scripted, tmp_path):
    server = scripted(malformed_keys=["问题3"])
    with pytest.raises(EndpointError, match=r"1 of 12 requests"):
        ask_all(server.base_url, "base", ROWS, system=None, cache_path=tmp_path / "c.jsonl", concurrency=4)
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 11


def test_torn_last_cache_line_is_cut_before_appending(scripted, tmp_path):
    cache = tmp_path / "c.jsonl"
    server = scripted()
    ask_all(server.base_url, "base", ROWS[:2], system=None, cache_path=cache)
    with cache.open("a", encoding="utf-8") as handle:
        handle.write('{"key": "torn", "id": "r9", "ans')  # a run killed mid-write
    answers = ask_all(server.base_url, "base", ROWS[:4], system=None, cache_path=cache)
    assert len(answers) == 4
    lines = cache.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(l)["answer"] for l in lines)

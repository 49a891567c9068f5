"""quantonium serve: every endpoint through the official openai client and raw HTTP (httpx).

The server runs in a thread of the test process (:class:`ServerThread`, the
real uvicorn on 127.0.0.1 and a free port) around tiny random Llamas
compressed in the session fixture; one test runs the ``quantonium serve``
command itself. Reference replies come from the same loaded models called
directly, one at a time.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from quantonium.chat.registry import Registry  # noqa: E402
from quantonium.chat.server import ModelPool, ServerConfig, ServerThread  # noqa: E402
from quantonium.chat.session import GenerationSettings  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

LIMIT = 1024  # max_tokens limit of the test server
BODY = 64 * 1024  # request body limit of the test server
PROMPTS = ["hello there", "the of and", "what is the capital", "water fire earth", "one two three",
           "big small long", "sun moon star", "good bad new"]


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def served(chat_models):
    reg = Registry.from_args([str(chat_models[k]) for k in ("tiny", "wide", "encoder")], None)
    pool = ModelPool(reg, ServerConfig(max_tokens_limit=LIMIT, max_body_bytes=BODY), report=lambda m: None).start()
    with ServerThread(pool) as url:
        yield url, pool


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served[0] + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def reference(pool, prompt: str, n: int = 16) -> str:
    return pool.loaded["tiny"].generate(msgs(prompt), GenerationSettings(max_new_tokens=n)).text


def status(url: str, name: str = "tiny") -> dict:
    return next(m for m in httpx.get(url + "/status").json()["models"] if m["name"] == name)


def wait_idle(url: str, name: str = "tiny", timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = status(url, name)
        if st["active"] == 0 and st["queued"] == 0:
            return st
        time.sleep(0.05)
    raise AssertionError(f"{name} still busy: {st}")


def test_models_and_health(served, client):
    url, pool = served
    assert [m.id for m in client.models.list().data] == ["tiny", "wide", "encoder"]
    card = client.models.retrieve("tiny")
    assert card.id == "tiny" and card.object == "model" and card.owned_by == "quantonium"
    extra = card.model_extra
    assert extra["chat"] is True and extra["auto"] is True and extra["kind"] == "causal-lm" and extra["fidelity"] == "not evaluated"
    assert client.models.retrieve("encoder").model_extra["chat"] is False
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nosuch")
    h = httpx.get(url + "/health")
    assert h.status_code == 200 and h.json() == {"status": "ok", "models": 3, "loaded": ["tiny"], "auto": "tiny"}


def test_chat_completion(served, client):
    url, pool = served
    ref = reference(pool, "hello there")
    r = client.chat.completions.create(model="tiny", messages=msgs("hello there"), max_tokens=16, temperature=0)
    assert r.choices[0].message.content == ref and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "length" and r.model == "tiny" and r.object == "chat.completion"
    assert r.usage.completion_tokens == 16 and r.usage.total_tokens == r.usage.prompt_tokens + 16
    q = r.model_extra["quantonium"]
    assert q["ttft_s"] > 0 and q["tokens_per_s"] > 0 and q["dtype"] == "float32"
    # "auto" is the router's pick; max_completion_tokens is max_tokens' newer name
    r = client.chat.completions.create(model="auto", messages=msgs("hello there"), max_completion_tokens=16, temperature=0)
    assert r.model == "tiny" and r.choices[0].message.content == ref
    # a system message and a multi-turn conversation go through the chat template
    conv = [{"role": "system", "content": "be short"}, {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "sun"}, {"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    r = client.chat.completions.create(model="tiny", messages=conv, max_tokens=8, temperature=0)
    assert r.choices[0].message.content == pool.loaded["tiny"].generate(
        [{**m, "content": "hello there"} if isinstance(m["content"], list) else m for m in conv],
        GenerationSettings(max_new_tokens=8)).text


def test_streaming(served, client):
    url, pool = served
    ref = reference(pool, "the of and")
    stream = client.chat.completions.create(model="tiny", messages=msgs("the of and"), max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    parts, finish, usage, first_role = [], None, None, None
    for ev in stream:
        if ev.usage is not None:
            usage = ev.usage
        for c in ev.choices:
            first_role = first_role or c.delta.role
            if c.delta.content:
                parts.append(c.delta.content)
            finish = c.finish_reason or finish
    assert "".join(parts) == ref and len(parts) > 1 and finish == "length" and first_role == "assistant"
    assert usage.completion_tokens == 16
    # the raw bytes: server-sent events of chat.completion.chunk objects, then data: [DONE]
    body = {"model": "tiny", "messages": msgs("the of and"), "max_tokens": 16, "temperature": 0, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    objs = [json.loads(e[6:]) for e in events[:-1]]
    assert {o["object"] for o in objs} == {"chat.completion.chunk"} and len({o["id"] for o in objs}) == 1
    assert "".join(o["choices"][0]["delta"].get("content", "") for o in objs) == ref
    assert objs[-1]["choices"][0]["finish_reason"] == "length" and "usage" not in objs[-1]


def test_sampling_seed_and_stop(served, client):
    url, pool = served
    kw = dict(model="tiny", messages=msgs("hello there"), max_tokens=16, temperature=1.0)
    a = client.chat.completions.create(**kw, seed=5).choices[0].message.content
    b = client.chat.completions.create(**kw, seed=5).choices[0].message.content
    c = client.chat.completions.create(**kw, seed=6).choices[0].message.content
    assert a == b and a != c
    ref = reference(pool, "hello there", 30)
    stop = " ".join(ref.split()[4:6])
    r = client.chat.completions.create(model="tiny", messages=msgs("hello there"), max_tokens=30, temperature=0, stop=[stop])
    assert r.choices[0].message.content == ref[: ref.find(stop)] and r.choices[0].finish_reason == "stop"


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"] and "\n" not in body["error"]["message"]
    return body["error"]


def test_errors_in_openai_shape(served, client):
    url, pool = served
    post = lambda content, **kw: httpx.post(url + "/v1/chat/completions", content=content, timeout=60, **kw)  # noqa: E731
    ok = {"model": "tiny", "messages": msgs("hi"), "max_tokens": 4}

    r = post(b"{not json")
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"
    r = post(b"[1, 2]")
    assert r.status_code == 400 and error_of(r)["message"] == "the body must be a JSON object"
    r = post(json.dumps({**ok, "model": "nosuch"}))
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found" and error_of(r)["param"] == "model"
    r = post(json.dumps({**ok, "model": str(pool.registry.get("tiny").path)}))  # a server path is not a model name
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"
    r = post(json.dumps({**ok, "model": "encoder"}))
    assert r.status_code == 400 and error_of(r)["code"] == "model_not_chat" and "encoder" in error_of(r)["message"]
    for bad, param in (({"temperature": 5}, "temperature"), ({"top_p": 0}, "top_p"), ({"max_tokens": 0}, "max_tokens"),
                       ({"max_tokens": LIMIT + 1}, "max_tokens"), ({"n": 2}, "n"), ({"messages": []}, "messages"),
                       ({"messages": [{"role": "robot", "content": "x"}]}, "messages"), ({"stream": "yes"}, "stream"),
                       ({"presence_penalty": 1}, "presence_penalty"), ({"stop": ["a"] * 5}, "stop"),
                       ({"tools": []}, "tools"), ({"logprobs": True}, "logprobs")):
        r = post(json.dumps({**ok, **bad}))
        assert r.status_code == 400 and error_of(r)["param"] == param, (bad, r.text)
    r = post(json.dumps({**ok, "messages": msgs("sea " * 2100)}))
    assert r.status_code == 400 and error_of(r)["code"] == "context_length_exceeded"
    r = post(b"x" * (BODY + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit holds while reading
        for _ in range(BODY // 1024 + 2):
            yield b" " * 1024

    r = post(chunked())
    assert r.status_code == 413
    r = httpx.get(url + "/v1/nothing")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = httpx.get(url + "/v1/chat/completions")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"
    # the same through the openai client: its own exception classes
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nosuch", messages=msgs("hi"))
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=msgs("hi"), temperature=7)
    assert e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="encoder", messages=msgs("hi"))
    # the server still answers
    assert client.chat.completions.create(**ok).usage.completion_tokens == 4


def test_eight_concurrent_requests_are_all_answered_completely(served):
    url, pool = served
    refs = {p: reference(pool, p, 20) for p in PROMPTS}
    assert len(set(refs.values())) == 8
    before = status(url)
    got: dict[str, tuple] = {}
    errors: list[BaseException] = []

    def ask(i: int, prompt: str) -> None:
        try:
            c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)
            kw = dict(model="tiny", messages=msgs(prompt), max_tokens=20, temperature=0)
            if i % 2:
                parts, finish = [], None
                for ev in c.chat.completions.create(**kw, stream=True):
                    for ch in ev.choices:
                        parts.append(ch.delta.content or "")
                        finish = ch.finish_reason or finish
                got[prompt] = ("".join(parts), finish)
            else:
                r = c.chat.completions.create(**kw)
                got[prompt] = (r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate(PROMPTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    for i, p in enumerate(PROMPTS):  # each reply is exactly what the model says to that prompt alone
        assert got[p][:2] == (refs[p], "length"), p
        if not i % 2:
            assert got[p][2] == 20
    after = wait_idle(url)
    assert after["requests"] - before["requests"] == 8 and after["completion_tokens"] - before["completion_tokens"] == 160


@contextlib.contextmanager
def slowed(pool, name: str = "tiny", seconds: float = 0.01):
    """Every forward pass of the served model takes at least ``seconds``: a generation of N tokens
    lasts N * seconds whatever the machine's speed, so "hang up while it runs" is not a race."""
    handle = pool.loaded[name].model.register_forward_pre_hook(lambda *_: time.sleep(seconds))
    try:
        yield
    finally:
        handle.remove()


def test_client_disconnect_stops_its_generation(served):
    url, pool = served
    body = {"model": "tiny", "messages": msgs("the of and"), "max_tokens": 1000, "temperature": 0}
    before = wait_idle(url)
    with slowed(pool):  # 1000 tokens take at least 10 s
        # streaming: read a few chunks, then hang up
        with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
            n = 0
            for line in r.iter_lines():
                if line.startswith("data: {") and '"content":"' in line:
                    n += 1
                    if n == 3:
                        break
        st = wait_idle(url)
        assert st["cancelled"] == before["cancelled"] + 1 and st["requests"] == before["requests"] + 1
        assert st["completion_tokens"] - before["completion_tokens"] < 1000
        # non-streaming: the client gives up (timeout) while the reply is being generated
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url + "/v1/chat/completions", json=body, timeout=0.5)
        st2 = wait_idle(url)
        assert st2["cancelled"] == st["cancelled"] + 1
        assert st2["completion_tokens"] - st["completion_tokens"] < 1000
        # a client that gives up while queued behind another request never gets a generation
        hold = threading.Thread(target=lambda: httpx.post(url + "/v1/chat/completions", json={**body, "max_tokens": 300}, timeout=120))
        hold.start()
        while status(url)["active"] == 0:
            time.sleep(0.01)
        with pytest.raises(httpx.TimeoutException):  # 300 tokens take at least 3 s: this one is still queued
            httpx.post(url + "/v1/chat/completions", json=body, timeout=0.3)
        hold.join(120)
    st3 = wait_idle(url)
    assert st3["requests"] == st2["requests"] + 1 and st3["cancelled"] == st2["cancelled"]
    assert st3["completion_tokens"] - st2["completion_tokens"] == 300


def test_status_and_metrics(served, client):
    from prometheus_client.parser import text_string_to_metric_families

    url, pool = served
    client.chat.completions.create(model="tiny", messages=msgs("hi"), max_tokens=5, temperature=0)
    s = httpx.get(url + "/status").json()
    srv = s["server"]
    assert srv["auto"] == "tiny" and srv["rss_bytes"] > 0 and srv["max_tokens_limit"] == LIMIT
    assert srv["router"].startswith("auto picked tiny: no model has a recorded evaluation; smallest file")
    tiny = next(m for m in s["models"] if m["name"] == "tiny")
    for key in ("requests", "prompt_tokens", "completion_tokens", "tokens_per_s_median", "ttft_s_median",
                "load_seconds", "weights_bytes", "file_bytes", "ratio_vs_source", "fidelity", "memory_need_bytes"):
        assert tiny[key] is not None, key
    assert tiny["loaded"] and tiny["requests"] >= 1 and tiny["tokens_per_s_median"] > 0 and tiny["ttft_s_median"] > 0
    enc = next(m for m in s["models"] if m["name"] == "encoder")
    assert enc["loaded"] is False and enc["chat"] is False
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
               for fam in text_string_to_metric_families(r.text) for smp in fam.samples}
    st = status(url)
    assert samples[("quantonium_completion_tokens_total", (("model", "tiny"),))] == st["completion_tokens"]
    assert samples[("quantonium_requests_total", (("model", "tiny"), ("outcome", "completed")))] == st["completed"]
    assert samples[("quantonium_model_loaded", (("model", "encoder"),))] == 0
    assert samples[("quantonium_model_file_bytes", (("model", "tiny"),))] == st["file_bytes"]
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert samples[("quantonium_rejected_requests_total", (("status", "400"),))] >= 1  # from the error test


def test_another_model_loads_on_first_use(served, client):
    url, pool = served
    r = client.chat.completions.create(model="wide", messages=msgs("hello"), max_tokens=6, temperature=0)
    assert r.model == "wide" and r.usage.completion_tokens == 6
    assert status(url, "wide")["loaded"] is True and "wide" in httpx.get(url + "/health").json()["loaded"]


def test_the_page_and_its_files(served):
    url, _ = served
    r = httpx.get(url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="model"' in r.text and 'id="status-model"' in r.text and "/static/app.js" in r.text
    js = httpx.get(url + "/static/app.js")
    assert js.status_code == 200 and "/v1/chat/completions" in js.text and "javascript" in js.headers["content-type"]
    assert httpx.get(url + "/static/style.css").status_code == 200
    assert httpx.get(url + "/static/../server.py").status_code == 404
    assert httpx.get(url + "/static/nope.js").status_code == 404


def _serve(*args):
    return subprocess.Popen([sys.executable, "-m", "quantonium", "serve", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_serve_command_binds_only_the_host_given(chat_models):
    psutil = pytest.importorskip("psutil")
    p = _serve(chat_models["tiny"], "--port", "0")
    try:
        line = p.stdout.readline()
        m = re.match(r"serving on (http://127\.0\.0\.1:(\d+)) ", line)
        assert m, (line, p.stderr.read() if p.poll() is not None else "")
        url, port = m.group(1), int(m.group(2))
        assert httpx.get(url + "/health").json()["auto"] == "tiny"
        listening = [c for c in psutil.Process(p.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert [(c.laddr.ip, c.laddr.port) for c in listening] == [("127.0.0.1", port)]
        # the port is taken now: a second server says so in one line
        r = subprocess.run([sys.executable, "-m", "quantonium", "serve", str(chat_models["tiny"]), "--port", str(port)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
            f"quantonium: error: cannot listen on 127.0.0.1:{port}: Address already in use")
        p.send_signal(signal.SIGINT)  # Ctrl-C: a graceful stop
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_the_serve_command_fails_in_one_line(chat_models):
    r = subprocess.run([sys.executable, "-m", "quantonium", "serve", str(chat_models["encoder"]), "--port", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(
        "quantonium: error: no usable chat model: encoder: an encoder (BertModel) cannot chat")
    r = subprocess.run([sys.executable, "-m", "quantonium", "serve", str(chat_models["tiny"]), "--port", "70000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not a port number" in r.stderr


def test_smollm2_through_the_server(smollm2_qnt):
    reg = Registry.from_args([str(smollm2_qnt)], None)
    pool = ModelPool(reg, ServerConfig(), report=lambda m: None).start()
    with ServerThread(pool) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)
        r = c.chat.completions.create(model="auto", messages=msgs("What is the capital of France?"), max_tokens=40, temperature=0)
        assert "Paris" in r.choices[0].message.content and r.choices[0].finish_reason == "stop"
        parts = [ch.delta.content or "" for ev in c.chat.completions.create(
            model=r.model, messages=msgs("What is the capital of France?"), max_tokens=40, temperature=0, stream=True)
            for ch in ev.choices]
        assert "".join(parts) == r.choices[0].message.content

"""``quantonium serve``: an OpenAI-compatible chat server (FastAPI + uvicorn) with a web page.

Endpoints: ``POST /v1/chat/completions`` (streamed as server-sent events in
OpenAI's chunk format ending with ``data: [DONE]``, or one JSON answer),
``GET /v1/models``, ``GET /v1/models/{name}``, ``GET /health``, ``GET /status``
(JSON figures per model), ``GET /metrics`` (Prometheus text format) and the
chat page at ``/``.

Every reply comes from a model rebuilt from a ``.qnt`` file
(:class:`quantonium.chat.session.ChatModel`). One generation at a time per
model: requests to a model wait in a first-come-first-served queue (an
``asyncio.Lock``) and each generation runs in a worker thread with its own
state; a client that disconnects, while queued or while its reply is being
generated, stops its generation between two tokens. Request bodies are read
up to ``max_body_bytes`` and ``max_tokens`` is bounded; malformed JSON,
unknown models and bad parameters get a 4xx in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import ApiError, chunk, completion, error_body, new_id, parse_request
from .registry import ModelEntry, NoUsableModel, Registry, format_bytes, load_first, route
from .session import ChatModel, GenerationSettings, PromptTooLong, process_memory

__all__ = ["ModelPool", "ServerConfig", "ServerThread", "create_app", "serve"]


@dataclass
class ServerConfig:
    dtype: str = "float32"
    threads: int = 1
    max_memory: int | None = None
    max_tokens_limit: int = 2048
    default_max_tokens: int = 256
    max_body_bytes: int = 1 << 20


class ModelPool:
    """The registry's models, loaded on first use and kept while memory allows.

    ``auto`` is resolved once, by the router rule, when the pool starts
    (:meth:`start`); a model that fails to load is reported and the next
    candidate is tried. Other models load when first asked for; loading one
    that would not fit the memory budget unloads idle models, least recently
    used first.
    """

    def __init__(self, registry: Registry, config: ServerConfig, report: Callable[[str], None] = print):
        self.registry = registry
        self.config = config
        self.report = report
        self.loaded: dict[str, ChatModel] = {}
        self.failed: dict[str, str] = {}
        self.last_used: dict[str, float] = {}
        self.queues: dict[str, asyncio.Lock] = {}
        self._load_lock = threading.Lock()
        self.auto: str | None = None
        self.decision = None
        self.started = time.time()

    def start(self) -> ModelPool:
        """Resolves ``auto`` by the router rule and loads it, reporting why (:class:`NoUsableModel` when nothing loads)."""
        d = self.decision = route(self.registry.entries, max_memory=self.config.max_memory, dtype=self.config.dtype)
        for e, why in d.excluded:
            self.report(f"{e.name}: not a candidate: {why}")
        if d.candidates:
            self.report(d.explain(dtype=self.config.dtype))
        entry, _ = load_first(d, self._load_entry, self.report)
        if entry is not d.candidates[0]:
            self.report(f"auto fell back to {entry.name} ({entry.fidelity_text()}, {entry.size_text()})")
        self.auto = entry.name
        return self

    def _load_entry(self, e: ModelEntry) -> ChatModel:
        from .loader import set_torch_threads

        set_torch_threads(self.config.threads)
        try:
            cm = ChatModel.load(e, dtype=self.config.dtype, threads=self.config.threads)
        except Exception as exc:
            self.failed[e.name] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise
        self.failed.pop(e.name, None)
        self.loaded[e.name] = cm
        self.last_used[e.name] = time.monotonic()
        self.report(f"loaded {e.name} ({e.size_text()}, {e.fidelity_text()}) in {cm.load_seconds:.1f} s, "
                    f"weights {format_bytes(cm.weights_bytes)} as {self.config.dtype}")
        return cm

    def entry(self, name: str) -> ModelEntry:
        """The entry for a request's ``model`` (a name, a model id, or ``auto``); 404 if unknown."""
        if name == "auto":
            name = self.auto or ""
        try:
            e = self.registry.get(name, paths=False)  # a client names models, never server paths
        except KeyError:
            raise ApiError(404, f"the model {name!r} does not exist on this server; GET /v1/models lists them",
                           param="model", code="model_not_found") from None
        problem = e.chat_problem()
        if problem:
            raise ApiError(400, f"the model {e.name!r} cannot chat: {problem}", param="model", code="model_not_chat")
        return e

    def get(self, e: ModelEntry) -> ChatModel:
        """The loaded model (loading it now if needed; runs in a worker thread)."""
        with self._load_lock:
            cm = self.loaded.get(e.name)
            if cm is None:
                self._make_room(e)
                try:
                    cm = self._load_entry(e)
                except Exception:
                    raise ApiError(503, f"the model {e.name!r} failed to load: {self.failed.get(e.name)}",
                                   type="server_error", code="model_load_failed") from None
            self.last_used[e.name] = time.monotonic()
            return cm

    def _make_room(self, e: ModelEntry) -> None:
        from .registry import available_memory

        budget = self.config.max_memory
        if budget is None:
            avail = available_memory()
            if avail is None:
                return
            budget = avail + sum(m.weights_bytes for m in self.loaded.values())
        need = e.memory_need(self.config.dtype)
        used = sum(m.weights_bytes for m in self.loaded.values())
        for name in sorted(self.loaded, key=lambda n: self.last_used.get(n, 0)):
            if used + need <= budget:
                break
            cm = self.loaded[name]
            if cm.stats.active or cm.stats.queued or self.queues.get(name, asyncio.Lock()).locked():
                continue
            del self.loaded[name]
            used -= cm.weights_bytes
            self.report(f"unloaded {name} to make room for {e.name}")
        if used + need > budget:
            raise ApiError(503, f"not enough memory for {e.name!r}: needs {format_bytes(need)}, "
                                f"{format_bytes(used)} of {format_bytes(budget)} held by busy models",
                           type="server_error", code="insufficient_memory")

    def queue(self, name: str) -> asyncio.Lock:
        lock = self.queues.get(name)
        if lock is None:
            lock = self.queues[name] = asyncio.Lock()
        return lock

    def status(self) -> dict[str, Any]:
        mem = process_memory()
        models = []
        for e in self.registry.entries:
            row = e.to_json(self.config.dtype)
            cm = self.loaded.get(e.name)
            row.update(cm.status() if cm is not None else {"loaded": False})
            if e.name in self.failed:
                row["load_error"] = self.failed[e.name]
            models.append(row)
        return {
            "server": {"uptime_s": time.time() - self.started, "dtype": self.config.dtype, "threads": self.config.threads,
                       "auto": self.auto, "router": self.decision.explain(self.registry.get(self.auto), self.config.dtype)
                       if self.auto else None,
                       "max_memory_bytes": self.config.max_memory, "max_tokens_limit": self.config.max_tokens_limit,
                       "max_body_bytes": self.config.max_body_bytes,
                       "rss_bytes": mem.get("rss"), "rss_anon_bytes": mem.get("rss_anon"), "peak_rss_bytes": mem.get("peak_rss")},
            "models": models,
        }


def _metrics_registry(pool: ModelPool, rejected: dict[int, int]):
    """A Prometheus registry whose collector reads the pool's figures at scrape time."""
    from prometheus_client import CollectorRegistry, ProcessCollector
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class PoolCollector:
        def collect(self):
            req = CounterMetricFamily("quantonium_requests", "Finished generations per model and outcome", labels=["model", "outcome"])
            ptok = CounterMetricFamily("quantonium_prompt_tokens", "Prompt tokens processed", labels=["model"])
            ctok = CounterMetricFamily("quantonium_completion_tokens", "Tokens generated", labels=["model"])
            gsec = CounterMetricFamily("quantonium_generation_seconds", "Time spent generating", labels=["model"])
            ttft = GaugeMetricFamily("quantonium_time_to_first_token_seconds", "Median time to first token of the last 256 generations", labels=["model"])
            tps = GaugeMetricFamily("quantonium_tokens_per_second", "Median decode speed of the last 256 generations", labels=["model"])
            queued = GaugeMetricFamily("quantonium_queued_requests", "Requests waiting for the model", labels=["model"])
            active = GaugeMetricFamily("quantonium_active_generations", "Generations running", labels=["model"])
            loaded = GaugeMetricFamily("quantonium_model_loaded", "1 when the model is in memory", labels=["model"])
            load_s = GaugeMetricFamily("quantonium_model_load_seconds", "Time the model took to load from its .qnt file", labels=["model"])
            wbytes = GaugeMetricFamily("quantonium_model_weights_bytes", "Bytes of the loaded model's weights and buffers", labels=["model"])
            fbytes = GaugeMetricFamily("quantonium_model_file_bytes", "Size of the model's .qnt file", labels=["model"])
            kl = GaugeMetricFamily("quantonium_model_mean_kl_nats", "Mean KL against the original, recorded by quantonium eval", labels=["model"])
            for e in pool.registry.entries:
                n = e.name
                fbytes.add_metric([n], e.file_bytes)
                if e.mean_kl is not None:
                    kl.add_metric([n], e.mean_kl)
                cm = pool.loaded.get(n)
                loaded.add_metric([n], 1 if cm is not None else 0)
                if cm is None:
                    continue
                st = cm.status()
                for outcome in ("completed", "cancelled", "errors"):
                    req.add_metric([n, outcome], st[outcome])
                ptok.add_metric([n], st["prompt_tokens"])
                ctok.add_metric([n], st["completion_tokens"])
                gsec.add_metric([n], st["generation_seconds"])
                if st["ttft_s_median"] is not None:
                    ttft.add_metric([n], st["ttft_s_median"])
                if st["tokens_per_s_median"] is not None:
                    tps.add_metric([n], st["tokens_per_s_median"])
                queued.add_metric([n], st["queued"])
                active.add_metric([n], st["active"])
                load_s.add_metric([n], cm.load_seconds)
                wbytes.add_metric([n], cm.weights_bytes)
            rej = CounterMetricFamily("quantonium_rejected_requests", "Requests answered with an error, by HTTP status", labels=["status"])
            for status, count in sorted(rejected.items()):
                rej.add_metric([str(status)], count)
            yield from (req, ptok, ctok, gsec, ttft, tps, queued, active, loaded, load_s, wbytes, fbytes, kl, rej)

    reg = CollectorRegistry()
    reg.register(PoolCollector())
    ProcessCollector(registry=reg)
    return reg


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ApiError(413, f"the request body is {int(declared)} bytes, above this server's limit of {limit}",
                               code="request_too_large")
        except ValueError:
            raise ApiError(400, "the Content-Length header is not a number") from None
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, f"the request body is above this server's limit of {limit} bytes", code="request_too_large")
    return bytes(body)


def _static(name: str) -> bytes:
    return resources.files("quantonium.chat").joinpath("static", name).read_bytes()


def create_app(pool: ModelPool):
    """The FastAPI application around a started :class:`ModelPool`."""
    cfg = pool.config
    rejected: dict[int, int] = {}
    metrics = _metrics_registry(pool, rejected)
    app = FastAPI(title="quantonium serve", docs_url=None, redoc_url=None, openapi_url=None)

    def fail(status: int, body: dict) -> JSONResponse:
        rejected[status] = rejected.get(status, 0) + 1
        return JSONResponse(body, status_code=status)

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return fail(exc.status, exc.body())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc: StarletteHTTPException):
        kind = "not_found" if exc.status_code == 404 else ("method_not_allowed" if exc.status_code == 405 else None)
        return fail(exc.status_code, error_body(str(exc.detail), code=kind))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return fail(400, error_body(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"))

    @app.exception_handler(Exception)
    async def _server_error(_request, exc: Exception):
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return fail(500, error_body(f"internal error: {msg}", type="server_error"))

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": len(pool.registry.entries), "loaded": sorted(pool.loaded), "auto": pool.auto}

    @app.get("/status")
    async def status():
        return pool.status()

    @app.get("/metrics")
    async def metrics_endpoint():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    def model_card(e: ModelEntry) -> dict[str, Any]:
        try:
            created = int(e.path.stat().st_mtime)
        except OSError:  # the file went away after the server started; the loaded model still answers
            created = 0
        return {"id": e.name, "object": "model", "created": created, "owned_by": "quantonium",
                **{k: v for k, v in e.to_json(cfg.dtype).items() if k not in ("name",)},
                "loaded": e.name in pool.loaded, "auto": e.name == pool.auto}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(e) for e in pool.registry.entries]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str):
        try:
            return model_card(pool.registry.get(name, paths=False))
        except KeyError:
            raise ApiError(404, f"the model {name!r} does not exist on this server", param="model",
                           code="model_not_found") from None

    @app.get("/")
    async def page():
        return Response(_static("index.html"), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}")
    async def static(name: str):
        types = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
        if name not in types:
            raise ApiError(404, f"no static file {name!r}", code="not_found")
        return Response(_static(name), media_type=types[name])

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await _read_body(request, cfg.max_body_bytes)
        req = parse_request(body, max_tokens_limit=cfg.max_tokens_limit, default_max_tokens=cfg.default_max_tokens)
        entry = pool.entry(req.model)
        cm = await asyncio.to_thread(pool.get, entry)
        messages = req.chat_messages()
        try:
            prompt, _ = await asyncio.to_thread(cm.prompt_ids, messages, 1)
        except PromptTooLong as e:
            raise ApiError(400, str(e), param="messages", code="context_length_exceeded") from None
        except Exception as e:  # the chat template refuses the conversation (e.g. roles out of order)
            raise ApiError(400, f"the model's chat template refused the messages: {str(e).splitlines()[0]}",
                           param="messages") from None
        settings = GenerationSettings(
            max_new_tokens=req.effective_max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=req.seed, stop=req.stops)
        cid, created = new_id(), int(time.time())
        stop_event = threading.Event()
        queue_lock = pool.queue(entry.name)
        loop = asyncio.get_running_loop()

        def extra(res, queued_s: float) -> dict[str, Any]:
            return {"queue_s": queued_s, "ttft_s": res.ttft_s, "tokens_per_s": res.tokens_per_s,
                    "seconds": res.seconds, "seed": res.seed, "finish_reason": res.finish_reason, "dtype": cm.dtype}

        def usage(res) -> dict[str, int]:
            return {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                    "total_tokens": res.prompt_tokens + res.completion_tokens}

        if not req.stream:
            async def watch():
                while not await request.is_disconnected():
                    await asyncio.sleep(0.1)
                stop_event.set()

            watcher = asyncio.create_task(watch())
            t0 = time.perf_counter()
            try:
                with _counted(cm):
                    turn = asyncio.create_task(queue_lock.acquire())
                    await asyncio.wait({turn, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if not turn.done() or turn.cancelled():
                    turn.cancel()
                    try:
                        await turn
                    except asyncio.CancelledError:
                        pass
                if not turn.done() or turn.cancelled() or turn.exception() is not None:
                    raise ApiError(499, "the client disconnected while queued", code="client_disconnected")
                try:
                    queued_s = time.perf_counter() - t0
                    res = await asyncio.to_thread(cm.generate, messages, settings, stop_event=stop_event)
                finally:
                    queue_lock.release()
            finally:
                watcher.cancel()
            return completion(cid, entry.name, res.text, res.finish_reason, usage(res), extra(res, queued_s))

        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        async def events():
            t0 = time.perf_counter()
            chunks: asyncio.Queue = asyncio.Queue()
            done = object()
            try:
                yield _sse(chunk(cid, created, entry.name, delta={"role": "assistant", "content": ""}))
                with _counted(cm):
                    await queue_lock.acquire()
                try:
                    queued_s = time.perf_counter() - t0

                    def on_text(text: str) -> None:
                        loop.call_soon_threadsafe(chunks.put_nowait, text)

                    def run():
                        try:
                            return cm.generate(messages, settings, on_text=on_text, stop_event=stop_event)
                        finally:
                            loop.call_soon_threadsafe(chunks.put_nowait, done)

                    fut = asyncio.ensure_future(asyncio.to_thread(run))
                    # if the client goes away, nobody awaits fut: its outcome is consumed here
                    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
                    while True:
                        item = await chunks.get()
                        if item is done:
                            break
                        yield _sse(chunk(cid, created, entry.name, delta={"content": item}))
                    try:
                        res = await fut
                    except Exception as exc:
                        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        yield _sse(error_body(f"generation failed: {msg}", type="server_error"))
                        yield "data: [DONE]\n\n"
                        return
                finally:
                    stop_event.set()  # no-op after a normal end; stops the generation if the client went away
                    queue_lock.release()
                yield _sse(chunk(cid, created, entry.name, delta={}, finish_reason=res.finish_reason,
                                 extra=extra(res, queued_s)))
                if include_usage:
                    yield _sse(chunk(cid, created, entry.name, usage=usage(res)))
                yield "data: [DONE]\n\n"
            finally:
                stop_event.set()  # a client that went away stops its generation

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


class _counted:
    """Counts a request as queued for its model while it waits for its turn."""

    def __init__(self, cm: ChatModel):
        self.cm = cm

    def __enter__(self):
        with self.cm.stats_lock:
            self.cm.stats.queued += 1

    def __exit__(self, *exc):
        with self.cm.stats_lock:
            self.cm.stats.queued -= 1


def _sse(obj: dict[str, Any]) -> str:
    return "data: " + json.dumps(obj, separators=(",", ":")) + "\n\n"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on exactly ``host`` (resolved once) and ``port`` (0: any free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ValueError(f"cannot resolve --host {host!r}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(pool: ModelPool, host: str, port: int, *, log_level: str = "warning", access_log: bool = False,
          announce: Callable[[str], None] | None = None) -> None:
    """Runs the server until SIGINT / SIGTERM; binds only ``host``."""
    import uvicorn

    sock = bind(host, port)
    actual = sock.getsockname()
    shown = f"[{actual[0]}]" if ":" in actual[0] else actual[0]
    url = f"http://{shown}:{actual[1]}"
    app = create_app(pool)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started and announce is not None:
                announce(url)

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5,
                            lifespan="off")
    Server(config).run(sockets=[sock])


class ServerThread:
    """The server in a background thread of this process (for embedding, tests and benchmarks).

    ``with ServerThread(pool) as url: ...`` serves on ``127.0.0.1`` and a free
    port, and stops (gracefully, up to 5 s) on leaving the block.
    """

    def __init__(self, pool: ModelPool, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = bind(host, port)
        h, p = self.sock.getsockname()[:2]
        self.url = f"http://[{h}]:{p}" if ":" in h else f"http://{h}:{p}"
        config = uvicorn.Config(create_app(pool), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="quantonium-serve")

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server thread did not start")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def announce_stdout(url: str) -> None:
    print(f"serving on {url} (chat page at {url}/, OpenAI API at {url}/v1); Ctrl-C stops", flush=True)
    sys.stdout.flush()

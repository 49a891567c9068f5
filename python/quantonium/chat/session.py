"""Generation with a model rebuilt from a .qnt file: streaming, stopping, statistics.

:class:`ChatModel` holds one loaded model, its tokenizer, a lock (one
generation at a time: concurrent callers wait their turn, their requests are
never interleaved into one generation state) and its running statistics.
:meth:`ChatModel.generate` is the decoding loop: the prompt is the model's own
chat template applied to the messages, then one forward pass per token with
the KV cache, greedy when the temperature is 0, otherwise sampled with
transformers' temperature and top-p warpers from a per-call
``torch.Generator`` (``seed`` makes it reproducible). Text is streamed through
transformers' ``TextStreamer`` (word by word, never a broken UTF-8
character); a ``threading.Event`` stops the loop between two tokens (Ctrl-C in
the terminal, a client that disconnects from the server).

Definitions used in every report:

- time to first token (TTFT): from the start of the generation (the request
  has its turn; tokenisation included) to the first new token sampled: the
  prefill of the whole prompt plus one step.
- tokens per second: decode speed, (completion tokens - 1) / (end - first
  token); the first token is TTFT's.
- completion tokens: tokens sampled, the end-of-sequence token included.
"""

from __future__ import annotations

import inspect
import os
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .registry import ModelEntry, format_bytes

__all__ = ["ChatModel", "GenerationResult", "GenerationSettings", "PromptTooLong", "process_memory"]


class PromptTooLong(ValueError):
    """The conversation does not fit the model's context."""


def process_memory() -> dict[str, int]:
    """Resident memory of this process in bytes: rss, rss_anon and peak_rss (from /proc/self/status)."""
    keys = {"VmRSS": "rss", "RssAnon": "rss_anon", "VmHWM": "peak_rss"}
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                k = line.split(":", 1)[0]
                if k in keys:
                    out[keys[k]] = int(line.split()[1]) * 1024
    except OSError:
        import resource

        out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of sequence or a stop string), "length", "cancelled"
    ttft_s: float | None
    seconds: float
    seed: int | None
    dropped_messages: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed: (completion tokens - 1) / (seconds after the first token)."""
        if self.ttft_s is None or self.completion_tokens < 2 or self.seconds <= self.ttft_s:
            return None
        return (self.completion_tokens - 1) / (self.seconds - self.ttft_s)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "tokens_per_s": self.tokens_per_s}


class _StopText:
    """Passes text on, cut at the first stop string; holds back what could be the start of one."""

    def __init__(self, stops: tuple[str, ...], emit: Callable[[str], None]):
        self.stops = tuple(s for s in stops if s)
        self.emit = emit
        self.pending = ""
        self.parts: list[str] = []
        self.hit = False

    def _out(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.emit(text)

    def feed(self, text: str) -> None:
        if self.hit or not text:
            return
        self.pending += text
        if not self.stops:
            self._out(self.pending)
            self.pending = ""
            return
        cut = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if cut:
            self._out(self.pending[: min(cut)])
            self.pending = ""
            self.hit = True
            return
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(s[:k]):
                    hold = k
                    break
        self._out(self.pending[: len(self.pending) - hold])
        self.pending = self.pending[len(self.pending) - hold :]

    def flush(self) -> None:
        if not self.hit:
            self._out(self.pending)
        self.pending = ""


def _streamer(tok, sink: _StopText):
    from transformers import TextStreamer

    class _Sink(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            sink.feed(text)

    return _Sink(tok, skip_prompt=False, skip_special_tokens=True)


@dataclass
class ModelStats:
    """Running totals of one model (read under :attr:`ChatModel.stats_lock`)."""

    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generation_seconds: float = 0.0
    queued: int = 0
    active: int = 0
    ttft_s: deque = field(default_factory=lambda: deque(maxlen=256))
    tokens_per_s: deque = field(default_factory=lambda: deque(maxlen=256))
    last: GenerationResult | None = None


class ChatModel:
    """A model rebuilt from a .qnt file, ready to chat (see the module docstring)."""

    def __init__(self, entry: ModelEntry, model, tokenizer, *, load_seconds: float, dtype: str,
                 rss_before: int | None = None):
        problem = entry.chat_problem()
        if problem:
            raise ValueError(f"{entry.name}: {problem}")
        if tokenizer is None:
            raise ValueError(f"{entry.name}: no tokenizer was rebuilt from the file")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{entry.name}: its tokenizer has no chat template")
        self.entry = entry
        self.model = model
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.load_seconds = load_seconds
        self.weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.weights_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
        rss = process_memory().get("rss")
        self.load_rss_delta = rss - rss_before if rss is not None and rss_before is not None else None
        self.context_length = entry.context_length or _context_length(model)
        self.eos_ids = _eos_ids(model, tokenizer)
        params = inspect.signature(model.forward).parameters
        # transformers 5 renamed the KV cache argument from past_key_values to cache
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = "logits_to_keep" in params
        self.lock = threading.Lock()
        self.stats_lock = threading.Lock()
        self.stats = ModelStats()

    @classmethod
    def load(cls, entry: ModelEntry, *, dtype: str = "float32", threads: int = 1) -> ChatModel:
        """Rebuilds the model from ``entry.path`` alone (:func:`quantonium.chat.loader.load_model`)."""
        from .loader import load_model

        problem = entry.chat_problem()
        if problem:
            raise ValueError(f"{entry.name}: {problem}")
        before = process_memory().get("rss")
        model, tok, seconds = load_model(entry.path, threads=threads, dtype=dtype)
        return cls(entry, model, tok, load_seconds=seconds, dtype=dtype, rss_before=before)

    # --- prompt ---------------------------------------------------------------------
    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        ids = enc["input_ids"]
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)

    def prompt_ids(self, messages: list[dict[str, str]], max_new_tokens: int, *,
                   drop_old: bool = False) -> tuple[list[int], int]:
        """The prompt's token ids and the number of old messages dropped to make it fit.

        With ``drop_old`` the oldest turns (a message and the assistant replies
        that follow it; system messages kept) go first until
        the prompt plus ``max_new_tokens`` fits the context or only the last
        message is left; :class:`PromptTooLong` if the prompt still leaves no room.
        """
        msgs = list(messages)
        dropped = 0
        ids = self._encode(msgs)
        ctx = self.context_length
        while drop_old and len(ids) + max_new_tokens > ctx:
            idx = next((i for i, m in enumerate(msgs[:-1]) if m["role"] != "system"), None)
            if idx is None:
                break
            del msgs[idx]
            dropped += 1
            while idx < len(msgs) - 1 and msgs[idx]["role"] == "assistant":  # the reply goes with its question
                del msgs[idx]
                dropped += 1
            ids = self._encode(msgs)
        if len(ids) >= ctx:
            raise PromptTooLong(f"the prompt has {len(ids)} tokens; {self.entry.name}'s context is {ctx} tokens")
        return ids, dropped

    # --- generation -----------------------------------------------------------------
    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings, *,
                 on_text: Callable[[str], None] | None = None, stop_event: threading.Event | None = None,
                 drop_old: bool = False) -> GenerationResult:
        """Generates one reply (waits for the model's lock first). See the module docstring."""
        settings.check()
        with self.stats_lock:
            self.stats.queued += 1
        try:
            self.lock.acquire()
        finally:
            with self.stats_lock:
                self.stats.queued -= 1
                self.stats.active += 1
        try:
            res = self._generate(messages, settings, on_text, stop_event, drop_old)
        except BaseException:
            with self.stats_lock:
                self.stats.errors += 1
                self.stats.requests += 1
            raise
        finally:
            with self.stats_lock:
                self.stats.active -= 1
            self.lock.release()
        with self.stats_lock:
            s = self.stats
            s.requests += 1
            if res.finish_reason == "cancelled":
                s.cancelled += 1
            else:
                s.completed += 1
            s.prompt_tokens += res.prompt_tokens
            s.completion_tokens += res.completion_tokens
            s.generation_seconds += res.seconds
            if res.ttft_s is not None:
                s.ttft_s.append(res.ttft_s)
            if res.tokens_per_s is not None:
                s.tokens_per_s.append(res.tokens_per_s)
            s.last = res
        return res

    def _generate(self, messages, settings: GenerationSettings, on_text, stop_event, drop_old) -> GenerationResult:
        import torch
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        t0 = time.perf_counter()
        prompt, dropped = self.prompt_ids(messages, settings.max_new_tokens, drop_old=drop_old)
        budget = min(settings.max_new_tokens, self.context_length - len(prompt))
        seed = settings.seed
        greedy = settings.temperature == 0
        gen = None
        warpers = LogitsProcessorList()
        if not greedy:
            if seed is None:
                seed = int.from_bytes(os.urandom(4), "little")
            gen = torch.Generator().manual_seed(seed)
            warpers.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_p < 1.0:
                warpers.append(TopPLogitsWarper(settings.top_p))
        sink = _StopText(settings.stop, on_text or (lambda _t: None))
        streamer = _streamer(self.tokenizer, sink)
        all_ids = list(prompt)
        cur = torch.tensor([prompt], dtype=torch.long)
        past = None
        ttft = None
        n = 0
        finish = "length"
        with torch.inference_mode():
            while n < budget:
                if stop_event is not None and stop_event.is_set():
                    finish = "cancelled"
                    break
                kw = {self._cache_arg: past, "use_cache": True}
                if self._keep_arg:
                    kw["logits_to_keep"] = 1
                out = self.model(input_ids=cur, **kw)
                past = out["cache"] if self._cache_arg == "cache" else out.past_key_values
                logits = out.logits[:, -1, :].float()
                if greedy:
                    nxt = int(torch.argmax(logits, dim=-1).item())
                else:
                    scores = warpers(torch.tensor([all_ids], dtype=torch.long), logits)
                    probs = torch.softmax(scores, dim=-1)
                    nxt = int(torch.multinomial(probs, 1, generator=gen).item())
                n += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
                if nxt in self.eos_ids:
                    finish = "stop"
                    break
                all_ids.append(nxt)
                streamer.put(torch.tensor([nxt]))
                if sink.hit:
                    finish = "stop"
                    break
                cur = torch.tensor([[nxt]], dtype=torch.long)
        if not sink.hit:
            streamer.end()
            sink.flush()
        return GenerationResult(text="".join(sink.parts), prompt_tokens=len(prompt), completion_tokens=n,
                                finish_reason=finish, ttft_s=ttft, seconds=time.perf_counter() - t0,
                                seed=None if greedy else seed, dropped_messages=dropped)

    # --- reports --------------------------------------------------------------------
    def status_line(self, res: GenerationResult | None = None) -> str:
        """One line: model, file size and ratio, recorded fidelity, tok/s, TTFT, resident memory."""
        res = res or self.stats.last
        e = self.entry
        parts = [f"{e.name}", e.size_text(), e.fidelity_text()]
        if res is not None:
            rate = res.tokens_per_s
            parts.append(f"{rate:.1f} tok/s" if rate is not None else "tok/s n/a")
            parts.append(f"first token {format_seconds(res.ttft_s)}" if res.ttft_s is not None else "no token")
            parts.append(f"{res.completion_tokens} tokens ({res.finish_reason})")
        parts.append(f"RSS {format_bytes(process_memory().get('rss'))}")
        return "[" + " | ".join(parts) + "]"

    def status(self) -> dict[str, Any]:
        """The model's figures as JSON (the server's /status)."""
        with self.stats_lock:
            s = self.stats
            gen_s = s.generation_seconds
            out = {
                "loaded": True, "dtype": self.dtype, "load_seconds": self.load_seconds,
                "weights_bytes": self.weights_bytes, "load_rss_delta_bytes": self.load_rss_delta,
                "context_length": self.context_length,
                "requests": s.requests, "completed": s.completed, "cancelled": s.cancelled, "errors": s.errors,
                "queued": s.queued, "active": s.active,
                "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
                "generation_seconds": gen_s,
                "tokens_per_s_median": statistics.median(s.tokens_per_s) if s.tokens_per_s else None,
                "tokens_per_s_last": s.last.tokens_per_s if s.last else None,
                "ttft_s_median": statistics.median(s.ttft_s) if s.ttft_s else None,
                "ttft_s_last": s.last.ttft_s if s.last else None,
            }
        return out


def format_seconds(s: float | None) -> str:
    """"12 ms" under a second, "1.23 s" above."""
    if s is None:
        return "n/a"
    return f"{1000 * s:.0f} ms" if s < 1 else f"{s:.2f} s"


def _context_length(model) -> int:
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return 1 << 20


def _eos_ids(model, tok) -> set[int]:
    ids: set[int] = set()
    for v in (getattr(model.generation_config, "eos_token_id", None), getattr(model.config, "eos_token_id", None),
              getattr(tok, "eos_token_id", None)):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v if isinstance(x, int))
    return ids

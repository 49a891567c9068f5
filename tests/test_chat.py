"""quantonium chat: the router rule, generation (streaming, sampling, stop, cancel, queueing), the terminal.

The models are tiny random Llamas compressed in the session fixture
``chat_models`` (tests/conftest.py); their greedy replies run to
``max_new_tokens`` exactly (see ``make_chat_model``). The integration test
compresses SmolLM2 (fixture ``smollm2_qnt``) and asks it a question.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from quantonium.chat.registry import (  # noqa: E402
    KL_RESOLUTION, ModelEntry, NoUsableModel, Registry, describe, load_first, parse_memory, route,
)
from quantonium.chat.session import ChatModel, GenerationSettings, PromptTooLong, _StopText  # noqa: E402

# transformers and torch warn about their own deprecations while loading models
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

GREEDY = GenerationSettings(max_new_tokens=24)


def run_chat(*args, input: str | None = None, timeout: float = 300):  # noqa: A002
    return subprocess.run([sys.executable, "-m", "quantonium", "chat", *map(str, args)], input=input,
                          capture_output=True, text=True, timeout=timeout)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def tiny(chat_models) -> ChatModel:
    return ChatModel.load(describe(chat_models["tiny"]))


# --- the router rule ---------------------------------------------------------------------------------

def entry(name, *, kl=None, size=1000, params=100, kind="causal-lm", template=True) -> ModelEntry:
    ev = None if kl is None else {"kind": "causal-lm", "perplexity_change_pct": 1.0, "mean_kl_nats": kl, "top1_agreement": 0.9}
    return ModelEntry(name=name, path=Path(f"/nowhere/{name}.qnt"), model_id=name,
                      architecture="LlamaForCausalLM" if kind == "causal-lm" else "BertModel", kind=kind,
                      file_bytes=size, source_bytes=4 * params, parameters=params, has_tokenizer=True,
                      has_chat_template=template, context_length=2048, evaluation=ev)


def names(decision) -> list[str]:
    return [e.name for e in decision.candidates]


def test_router_orders_by_recorded_fidelity_then_size():
    es = [entry("unevaluated-small", size=10), entry("good", kl=0.01, size=900), entry("best", kl=0.001, size=1000),
          entry("good-smaller", kl=0.01 + KL_RESOLUTION / 10, size=800), entry("unevaluated-big", size=20)]
    d = route(es, max_memory=10**9)
    # best KL first; equal KL at the 1e-4 resolution: smaller file first; unevaluated last, smaller first
    assert names(d) == ["best", "good-smaller", "good", "unevaluated-small", "unevaluated-big"]
    assert d.explain().startswith("auto picked best: best recorded fidelity")
    assert "KL 0.0010 nats" in d.explain()


def test_router_respects_the_memory_budget_and_refuses_what_cannot_chat():
    es = [entry("huge", kl=0.0001, params=10**6), entry("fits", kl=0.5, params=100),
          entry("enc", kl=0.0, kind="encoder"), entry("no-template", template=False)]
    d = route(es, max_memory=1000, dtype="float32")  # fits needs 400 B, huge 4 MB
    assert names(d) == ["fits"]
    why = {e.name: w for e, w in d.excluded}
    assert "more than the 1000 B of --max-memory" in why["huge"]
    assert "encoder" in why["enc"] and "cannot chat" in why["enc"]
    assert "no chat template" in why["no-template"]
    # bfloat16 halves the need: 2 bytes per weight
    assert names(route([entry("a", params=300)], max_memory=700, dtype="bfloat16")) == ["a"]
    assert names(route([entry("a", params=300)], max_memory=700, dtype="float32")) == []
    # without --max-memory the budget is the memory available now
    assert route(es).budget_source == "memory available now" and route(es).budget > 0


def test_router_tries_the_next_candidate_when_one_fails_to_load():
    d = route([entry("a", kl=0.001), entry("b", kl=0.002), entry("enc", kind="encoder")], max_memory=10**9)
    reports: list[str] = []

    def load(e):
        if e.name == "a":
            raise ValueError("a.qnt: checksum mismatch\nsecond line")
        return f"model {e.name}"

    assert load_first(d, load, reports.append) == (d.candidates[1], "model b")
    assert reports == ["a: failed to load (a.qnt: checksum mismatch); trying the next candidate"]
    with pytest.raises(NoUsableModel) as err:
        load_first(d, lambda e: (_ for _ in ()).throw(OSError("gone")), reports.append)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("no usable chat model: a failed to load; b failed to load; enc: an encoder")


def test_parse_memory():
    assert parse_memory("2GiB") == 2 * 2**30
    assert parse_memory("1.5 GB") == 1_500_000_000
    assert parse_memory("800MiB") == 800 * 2**20
    assert parse_memory("4096") == 4096
    for bad in ("", "lots", "-1GiB", "0", "3 parsecs"):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_registry_describes_files_from_their_index(chat_models, tmp_path):
    e = describe(chat_models["tiny"])
    assert e.kind == "causal-lm" and e.architecture == "LlamaForCausalLM" and e.chat_problem() is None
    model = transformers.AutoModelForCausalLM.from_pretrained(chat_models["tiny-src"])
    assert e.parameters == sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    assert e.memory_need("float32") == 4 * e.parameters and e.memory_need("bfloat16") == 2 * e.parameters
    assert e.file_bytes == chat_models["tiny"].stat().st_size and e.fidelity_text() == "not evaluated"
    assert e.context_length == 2048
    enc = describe(chat_models["encoder"])
    assert enc.kind == "encoder" and "encoder" in enc.chat_problem()
    # a folder registry; two files with the same name are refused; a missing folder is one clear error
    d = tmp_path / "reg"
    d.mkdir()
    shutil.copy(chat_models["tiny"], d / "a.qnt")
    shutil.copy(chat_models["encoder"], d / "b.qnt")
    (d / "notes.txt").write_text("not a model")
    reg = Registry.from_args([], str(d))
    assert [x.name for x in reg.entries] == ["a", "b"]
    assert reg.get("a").path == d / "a.qnt" and reg.get(str(d / "b.qnt")).name == "b"
    with pytest.raises(KeyError, match="unknown model 'c'"):
        reg.get("c")
    with pytest.raises(ValueError, match="two models are named 'a'"):
        Registry.from_args([str(d / "a.qnt")], str(d))
    with pytest.raises(ValueError, match="no such registry folder"):
        Registry.from_args([], str(tmp_path / "missing"))
    (d / "c.qnt").write_bytes(b"not a qnt file" * 20)
    left_out: list[str] = []
    assert [x.name for x in Registry.from_args([], str(d), report=left_out.append).entries] == ["a", "b"]
    assert len(left_out) == 1 and "c.qnt: left out of the registry" in left_out[0]


# --- generation ------------------------------------------------------------------------------------

def test_greedy_reply_equals_transformers_generate(tiny):
    """Our KV-cache loop against transformers' own generate (greedy) on the same rebuilt model."""
    prompt, _ = tiny.prompt_ids(user("hello there"), 24)
    chunks: list[str] = []
    res = tiny.generate(user("hello there"), GREEDY, on_text=chunks.append)
    ref = tiny.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                              do_sample=False, max_new_tokens=24, pad_token_id=tiny.tokenizer.pad_token_id)
    assert res.text == tiny.tokenizer.decode(ref[0, len(prompt):], skip_special_tokens=True)
    assert res.text.strip() and "".join(chunks) == res.text and len(chunks) > 1  # streamed in pieces
    assert res.prompt_tokens == len(prompt) and res.completion_tokens == 24 and res.finish_reason == "length"
    assert res.ttft_s is not None and 0 < res.ttft_s <= res.seconds and res.tokens_per_s > 0
    assert res.seed is None  # greedy needs none


def test_sampling_is_seeded_and_top_p_narrows(tiny):
    s = dict(max_new_tokens=24, temperature=1.0)
    a = tiny.generate(user("hello there"), GenerationSettings(**s, seed=7))
    b = tiny.generate(user("hello there"), GenerationSettings(**s, seed=7))
    c = tiny.generate(user("hello there"), GenerationSettings(**s, seed=8))
    greedy = tiny.generate(user("hello there"), GREEDY)
    assert a.text == b.text and a.seed == 7 and a.text != c.text and a.text != greedy.text
    # top-p that keeps only the most likely token is greedy decoding
    assert tiny.generate(user("hello there"), GenerationSettings(**s, top_p=1e-6, seed=1)).text == greedy.text
    # without a seed, a random one is drawn and reported, and it reproduces the reply
    d = tiny.generate(user("hello there"), GenerationSettings(**s))
    assert d.seed is not None and tiny.generate(user("hello there"), GenerationSettings(**s, seed=d.seed)).text == d.text
    with pytest.raises(ValueError, match="temperature"):
        tiny.generate(user("x"), GenerationSettings(temperature=3))
    with pytest.raises(ValueError, match="top_p"):
        tiny.generate(user("x"), GenerationSettings(top_p=0))


def test_stop_strings_cut_the_reply(tiny):
    full = tiny.generate(user("the of and"), GenerationSettings(max_new_tokens=40)).text
    words = full.split()
    stop = " ".join(words[5:7])
    chunks: list[str] = []
    res = tiny.generate(user("the of and"), GenerationSettings(max_new_tokens=40, stop=(stop, "never-there")),
                        on_text=chunks.append)
    assert res.text == full[: full.find(stop)] and res.finish_reason == "stop" and "".join(chunks) == res.text
    assert res.completion_tokens < 40


def test_stop_text_holds_back_a_possible_stop_string():
    out: list[str] = []
    s = _StopText(("END", "xy"), out.append)
    for piece in ("abc E", "N", "d x", "z E", "ND tail"):
        s.feed(piece)
    assert "".join(out) == "abc ENd xz " and s.hit
    out.clear()
    s = _StopText(("END",), out.append)
    s.feed("abc EN")
    assert "".join(out) == "abc "
    s.flush()
    assert "".join(out) == "abc EN" and not s.hit


def test_stop_event_cancels_between_tokens(tiny):
    ev = threading.Event()
    ev.set()
    res = tiny.generate(user("hello"), GenerationSettings(max_new_tokens=50), stop_event=ev)
    assert res.finish_reason == "cancelled" and res.completion_tokens == 0 and res.text == ""
    ev = threading.Event()
    seen: list[str] = []

    def on_text(t):
        seen.append(t)
        if len(seen) == 3:
            ev.set()

    res = tiny.generate(user("hello"), GenerationSettings(max_new_tokens=1500), on_text=on_text, stop_event=ev)
    assert res.finish_reason == "cancelled" and 3 <= res.completion_tokens < 20
    st = tiny.status()
    assert st["cancelled"] >= 2 and st["active"] == 0 and st["queued"] == 0


def test_concurrent_generations_are_queued_not_interleaved(tiny):
    prompts = ["hello there", "the of and", "what is the capital", "water fire earth"]
    ref = {p: tiny.generate(user(p), GREEDY).text for p in prompts}
    assert len(set(ref.values())) == len(prompts)
    got: dict[str, str] = {}

    def worker(p):
        got[p] = tiny.generate(user(p), GREEDY).text

    threads = [threading.Thread(target=worker, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got == ref


def test_context_overflow(tiny):
    long_msg = " ".join(["hello"] * 2100)
    with pytest.raises(PromptTooLong, match="context is 2048 tokens"):
        tiny.prompt_ids(user(long_msg), 10)
    history = []
    for _ in range(7):  # 7 x 300 words: more than the context of 2048 tokens
        history += [{"role": "user", "content": " ".join(["sea"] * 300)}, {"role": "assistant", "content": "sun moon"}]
    history.append({"role": "user", "content": "last question"})
    with pytest.raises(PromptTooLong):
        tiny.prompt_ids([{"role": "system", "content": "be short"}] + history, 100)
    ids, dropped = tiny.prompt_ids([{"role": "system", "content": "be short"}] + history, 100, drop_old=True)
    assert dropped > 0 and len(ids) + 100 <= 2048
    text = tiny.tokenizer.decode(ids)
    assert "system be short" in text and "last question" in text
    assert text.index("system be short") < text.index("user sea")  # after the system message, a user turn
    assert "system be short <|im_end|> <|im_start|> user" in text


def test_status_line(tiny):
    res = tiny.generate(user("hello"), GREEDY)
    line = tiny.status_line(res)
    assert line.startswith("[tiny | ") and "vs source" in line and "not evaluated" in line
    assert re.search(r"\d+\.\d tok/s \| first token (\d+ ms|\d+\.\d\d s) \| 24 tokens \(length\) \| RSS \d+\.\d MiB", line)


# --- the terminal -----------------------------------------------------------------------------------

def test_pipe_answers_and_exits(chat_models, tiny):
    ref = tiny.generate(user("hello there"), GenerationSettings(max_new_tokens=12)).text
    r = run_chat(chat_models["tiny"], "--max-new-tokens", 12, input="hello there\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ref + "\n"  # the reply alone on stdout
    assert "auto picked tiny" in r.stderr and "loaded tiny in" in r.stderr
    status = [ln for ln in r.stderr.splitlines() if ln.startswith("[tiny | ")]
    assert len(status) == 1 and "tok/s" in status[0] and "first token" in status[0] and "not evaluated" in status[0]


def test_commands(chat_models, tiny):
    ref = tiny.generate(user("hello there"), GenerationSettings(max_new_tokens=8)).text
    script = ("hello there\n/stats\n/model\n/model nosuch\n/frobnicate\n/reset\n/stats\n/help\n"
              "hello\n/model wide\nhello again\n/stats\n" + "sea " * 2100 + "\n/quit\nnot answered\n")
    r = run_chat(chat_models["tiny"], chat_models["encoder"], chat_models["wide"], "--model", "tiny",
                 "--max-new-tokens", 8, input=script)
    assert r.returncode == 0, r.stderr
    replies = r.stdout.splitlines()
    assert len(replies) == 3 and replies[0] == ref  # nothing after /quit is answered
    err = r.stderr
    assert "replies:    1 (0 stopped), " in err and "history:    2 messages" in err  # /stats
    assert re.search(r"\* tiny +causal-lm", err) and re.search(r"  encoder +encoder .*cannot chat", err)  # /model
    assert "cannot switch to nosuch: unknown model 'nosuch'; known: tiny, encoder, wide" in err
    assert "unknown command /frobnicate; /help lists them" in err
    assert "(conversation cleared)" in err and "history:    0 messages" in err
    assert "/model NAME" in err  # /help
    # /model wide: loads it, keeps the conversation (4 messages after the second reply)
    assert "loaded wide in" in err and "model:      wide" in err and "history:    4 messages" in err
    # a message longer than the context is refused, the session goes on
    assert "cannot answer: the prompt has 21" in err and "wide's context is 2048 tokens" in err


def test_usage_and_failure_errors(chat_models, tmp_path):
    r = run_chat(chat_models["encoder"], "--model", "encoder", input="hi\n")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "quantonium: error: encoder cannot chat: an encoder (BertModel) cannot chat: only causal LMs generate text"]
    r = run_chat(chat_models["encoder"], input="hi\n")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("quantonium: error: no usable chat model: encoder: an encoder")
    r = run_chat(chat_models["tiny"], "--max-memory", "1KiB", input="hi\n")
    assert r.returncode == 1 and "needs " in r.stderr and "more than the 1.0 KiB of --max-memory" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("quantonium: error: no usable chat model: tiny: needs")
    r = run_chat(tmp_path / "missing.qnt", input="hi\n")
    assert r.returncode == 1 and r.stderr.strip() == f"quantonium: error: {tmp_path / 'missing.qnt'}: no such file"
    r = run_chat(input="hi\n")
    assert r.returncode == 1 and r.stderr.strip() == "quantonium: error: no model given: name .qnt files or a --registry folder"
    for bad in (("--temperature", "3"), ("--top-p", "0"), ("--max-new-tokens", "0"), ("--dtype", "int3"),
                ("--max-memory", "lots")):
        r = run_chat(chat_models["tiny"], *bad, input="hi\n")
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("quantonium chat: error: argument"), bad
        assert r.stdout == ""


def _corrupt_copy(src: Path, dst: Path) -> None:
    """A copy whose index is intact (the registry reads it) but one tensor's payload fails its checksum."""
    from quantonium.container import QntFile

    shutil.copy(src, dst)
    with QntFile(src) as f:
        big = max(f, key=lambda n: f.info(n)["length"])
        pos = f.info(big)["offset"] + f.info(big)["length"] // 2
    with open(dst, "r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([b[0] ^ 0xFF]))


def test_auto_reports_a_model_that_fails_to_load_and_uses_the_next(chat_models, tmp_path, tiny):
    reg = tmp_path / "reg"
    reg.mkdir()
    _corrupt_copy(chat_models["tiny"], reg / "a-broken.qnt")  # same size as tiny, first by name
    shutil.copy(chat_models["tiny"], reg / "tiny.qnt")
    ref = tiny.generate(user("hello there"), GenerationSettings(max_new_tokens=6)).text
    r = run_chat("--registry", reg, "--max-new-tokens", 6, input="hello there\n")
    assert r.returncode == 0, r.stderr
    assert "auto picked a-broken" in r.stderr
    assert re.search(r"a-broken: failed to load \(.*checksum mismatch.*\); trying the next candidate", r.stderr)
    assert "auto fell back to tiny" in r.stderr and r.stdout == ref + "\n"


def test_auto_picks_the_best_recorded_fidelity(chat_models, tmp_path):
    """Two real compressions of one model, evaluated as `quantonium eval` does: auto picks the lower KL."""
    from quantonium.pipeline import compress

    reg = tmp_path / "reg"
    reg.mkdir()
    src = chat_models["tiny-src"]
    shutil.copy(chat_models["tiny"], reg / "tiny-8bit.qnt")
    compress(str(src), reg / "tiny-2bit.qnt", codec="direct", bpw=2, threads=1, progress=False)
    text = tmp_path / "text.txt"
    import numpy as np

    from conftest import CHAT_WORDS

    text.write_text(" ".join(np.random.default_rng(0).choice(CHAT_WORDS, 600)))
    from quantonium.container import update_model
    from quantonium.evaluate import evaluate

    for q in ("tiny-8bit", "tiny-2bit"):  # what `quantonium eval` does, in this process
        res = evaluate(str(src), reg / f"{q}.qnt", text=text.read_text(), text_name="words", window=128, max_tokens=512)
        update_model(reg / f"{q}.qnt", {"evaluation": res})
    kl = {q: describe(reg / f"{q}.qnt").mean_kl for q in ("tiny-8bit", "tiny-2bit")}
    assert kl["tiny-8bit"] < kl["tiny-2bit"]
    assert (reg / "tiny-2bit.qnt").stat().st_size < (reg / "tiny-8bit.qnt").stat().st_size
    r = run_chat("--registry", reg, "--max-new-tokens", 4, input="/stats\n")
    assert r.returncode == 0, r.stderr
    assert f"auto picked tiny-8bit: best recorded fidelity (perplexity " in r.stderr
    assert f"KL {kl['tiny-8bit']:.4f} nats" in r.stderr and "1 other candidate, 0 excluded" in r.stderr
    assert "fidelity:   perplexity" in r.stderr  # /stats shows the recorded evaluation


class Pty:
    """A child process on a pseudo-terminal (so it is interactive and Ctrl-C / Ctrl-D reach it as keys)."""

    def __init__(self, argv):
        import pty

        env = dict(os.environ, TERM="dumb", COLUMNS="200")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.execve(sys.executable, [sys.executable, *argv], env)
        self.buf = ""

    def read_until(self, pattern: str, timeout: float = 120, start: int = 0) -> str:
        end = time.monotonic() + timeout
        while not re.search(pattern, self.buf[start:]):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout} s; screen so far:\n{self.buf[-3000:]}")
            if select.select([self.fd], [], [], min(left, 0.5))[0]:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"the program ended before {pattern!r}; screen:\n{self.buf[-3000:]}")
                self.buf += data.decode("utf-8", "replace").replace("\r\n", "\n")
        return self.buf

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait(self, timeout: float = 60) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:
                if select.select([self.fd], [], [], 0.2)[0]:
                    self.buf += os.read(self.fd, 65536).decode("utf-8", "replace")
            except OSError:
                time.sleep(0.1)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"the program did not exit; screen:\n{self.buf[-3000:]}")


def test_terminal_ctrl_c_stops_the_reply_not_the_program(chat_models):
    t = Pty(["-m", "quantonium", "chat", str(chat_models["tiny"]), "--max-new-tokens", "2000"])
    try:
        t.read_until(r"Ctrl-D to exit\n")
        t.read_until(r">>> ")
        t.send("the of and\n")
        mark = len(t.read_until(r"the of and\n"))
        t.read_until(r"(\S+ ){10}", start=mark)  # the reply is streaming
        t.send("\x03")  # Ctrl-C, as typed
        screen = t.read_until(r"\(reply stopped\)")
        line = t.read_until(r"\[tiny \| .*\(cancelled\) \| RSS .*\]")
        assert re.search(r"\| (\d+) tokens \(cancelled\)", line)
        n = int(re.search(r"\| (\d+) tokens \(cancelled\)", line).group(1))
        assert 0 < n < 2000
        assert line[mark:].index("(reply stopped)") < line[mark:].index("[tiny | ")  # then the status line
        # the prompt after the status line, not the first one (it may have come in the same read as the line)
        after = list(re.finditer(r"\[tiny \| .*\(cancelled\) \| RSS .*\]", line))[-1].end()
        t.read_until(r">>> ", start=after)
        # Ctrl-C at the prompt clears it. CPython's readline prints the prompt, then blocks in select() on
        # stdin: a SIGINT that lands in between is only seen with the next key (a race no person hits, a
        # test can); so press it again, as a person would, until the hint shows; the chat must survive each
        at = len(t.buf)
        for attempt in range(6):
            time.sleep(0.3)
            t.send("\x03")
            try:
                t.read_until(r"\(Ctrl-D or /quit exits\)", timeout=3, start=at)
                break
            except AssertionError as e:
                if "ended" in str(e) or attempt == 5:
                    raise
        t.send("/stats\n")
        t.read_until(r"replies:    1 \(1 stopped\)")
        t.read_until(r"history:    2 messages")
        t.send("\x04")  # Ctrl-D at an empty prompt
        assert t.wait() == 0
    finally:
        try:
            os.kill(t.pid, 9)
            os.waitpid(t.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_sigint_to_a_piped_chat_stops_the_generation(chat_models):
    """The same with stdin kept open on a pipe: SIGINT stops the reply, the next line is still answered."""
    p = subprocess.Popen([sys.executable, "-m", "quantonium", "chat", str(chat_models["tiny"]), "--max-new-tokens", "2000"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    try:
        p.stdin.write("the of and\n")
        p.stdin.flush()
        first = ""
        while len(first.split()) < 10:
            first += p.stdout.read(1)
        p.send_signal(2)
        p.stdin.write("/stats\n/quit\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "(reply stopped)" in err and "replies:    1 (1 stopped)" in err
        assert len((first + out).split()) < 2000
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_smollm2_knows_the_capital_of_france(smollm2_qnt):
    r = run_chat(smollm2_qnt, "--max-new-tokens", 40, input="What is the capital of France?\n")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout, r.stdout
    assert "(stop)" in r.stderr  # it ended on its own end-of-turn token


def test_a_ctrl_c_between_a_reply_and_the_prompt_does_not_end_the_chat(tmp_path):
    """The reply's SIGINT handler is gone once it returns: a Ctrl-C before the next prompt lands in the loop."""
    import io

    from quantonium.chat.terminal import ChatSession

    class Interrupted(ChatSession):
        def reply(self, line):
            raise KeyboardInterrupt  # as if Ctrl-C arrived while the status line was printed

    err = io.StringIO()
    s = Interrupted(None, GREEDY, out=io.StringIO(), err=err)  # no model is loaded before the first reply
    lines = iter(["hello", "/quit"])
    assert s.run(read=lambda _p: next(lines), interactive=True) == 0
    assert "(Ctrl-D or /quit exits)" in err.getvalue()

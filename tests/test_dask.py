"""compress on a Dask cluster (issue 13): the same bytes as a local run, workers that die, a scheduler that is not there.

The cluster is real and local: a ``distributed`` scheduler and worker processes
on 127.0.0.1 started here (one thread each, no nanny, so that a worker's
process is the one the test kills). The byte-identity runs use the ``direct``
codec: the RFT codecs plan their FFTs with FFTW_MEASURE, which picks an
algorithm by timing, so two local runs of ``rft-dense`` can already differ in
the last bits of a measured SNR (README, "Compressing on a Dask cluster").
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import quantonium  # noqa: E402
from quantonium.compress import compress  # noqa: E402
from quantonium.compress.sink import QntSink  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning",
                                        "ignore::ResourceWarning")

PYTHONPATH = str(Path(quantonium.__file__).resolve().parents[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PYTHONPATH, *filter(None, [env.get("PYTHONPATH")])])
    env.pop("QUANTONIUM_FAULT", None)
    return env


class Cluster:
    """A scheduler and worker processes on loopback; every process is ours and is stopped by pid."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.procs: list[subprocess.Popen] = []
        sched_file = d / "scheduler.json"
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)], cwd=d, env=_env(),
            stdout=subprocess.DEVNULL, stderr=open(d / "scheduler.log", "wb")))
        t0 = time.monotonic()
        while not sched_file.is_file() or not sched_file.read_text().strip().endswith("}"):
            assert time.monotonic() - t0 < 60 and self.procs[0].poll() is None, (d / "scheduler.log").read_text()
            time.sleep(0.1)
        self.address = json.loads(sched_file.read_text())["address"]
        self.client = distributed.Client(self.address, set_as_default=False)

    def worker(self, hide: Path | None = None) -> subprocess.Popen:
        """Starts one worker (one thread); ``hide``: a folder it cannot see (a tmpfs over it, own mount namespace)."""
        before = set(self.client.scheduler_info(n_workers=-1)["workers"])
        cmd = [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny",
               "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(self.d)]
        if hide is not None:
            cmd = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs none "$0" && exec "$@"', str(hide), *cmd]
        n = len(self.procs)
        p = subprocess.Popen(cmd, cwd=self.d, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=open(self.d / f"worker{n}.log", "wb"))
        self.procs.append(p)
        t0 = time.monotonic()
        while True:
            now = set(self.client.scheduler_info(n_workers=-1)["workers"])
            if now - before:
                p.address = (now - before).pop()
                return p
            assert time.monotonic() - t0 < 60 and p.poll() is None, (self.d / f"worker{n}.log").read_text()
            time.sleep(0.1)

    def stop(self, p: subprocess.Popen) -> None:
        """Kills one worker and waits until the scheduler has removed it."""
        p.send_signal(signal.SIGKILL)
        p.wait()
        t0 = time.monotonic()
        while p.address in self.client.scheduler_info(n_workers=-1)["workers"]:
            assert time.monotonic() - t0 < 30
            time.sleep(0.1)

    def close(self) -> None:
        self.client.close()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.worker()
        c.worker()
        yield c
    finally:
        c.close()


def _gpt2(path: Path, n_embd: int = 64, n_layer: int = 2, dtype=None) -> Path:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=4, vocab_size=1000, n_positions=128)
    model = transformers.GPT2LMHeadModel(cfg)
    (model if dtype is None else model.to(dtype)).save_pretrained(path)
    return path


def test_per_tensor_run_is_byte_identical(cluster, tmp_path, capfd):
    src = _gpt2(tmp_path / "src")
    local = compress(str(src), tmp_path / "local.qnt", codec="direct", bpw=4.0, threads=2, progress=False)
    res = compress(str(src), tmp_path / "dask.qnt", codec="direct", bpw=4.0, threads=2, progress=False,
                   executor="dask://" + cluster.address.removeprefix("tcp://"))
    assert (tmp_path / "dask.qnt").read_bytes() == (tmp_path / "local.qnt").read_bytes()
    assert local.executor == {"kind": "threads", "threads": 2}
    ex = res.executor
    assert ex["kind"] == "dask" and ex["workers"] == 2 and ex["tensor_data"] == "read by the workers", ex
    assert "tensors read by the workers" in capfd.readouterr().err
    # the workers really did the work: each ran jobs of this run
    logs = cluster.client.run(lambda dask_worker: len(dask_worker.data) + len(dask_worker.state.log))
    assert len(logs) == 2 and all(n > 0 for n in logs.values())


def test_calibrated_llama_is_byte_identical(cluster, tmp_path, gpt2_folder_module):
    tok_src, text = gpt2_folder_module
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(num_hidden_layers=2, num_key_value_heads=2, max_position_embeddings=128,
                                   hidden_size=64, intermediate_size=128, num_attention_heads=4, vocab_size=256)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "src")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tok_src / f).is_file():
            shutil.copy(tok_src / f, tmp_path / "src" / f)
    (tmp_path / "cal.txt").write_text(text)
    kw = dict(codec="direct", bpw=4.0, calibration=str(tmp_path / "cal.txt"), calibration_tokens=256, threads=1,
              progress=False)
    compress(str(tmp_path / "src"), tmp_path / "local.qnt", **kw)
    res = compress(str(tmp_path / "src"), tmp_path / "dask.qnt", executor="dask://" + cluster.address[6:], **kw)
    assert (tmp_path / "dask.qnt").read_bytes() == (tmp_path / "local.qnt").read_bytes()
    assert res.executor["tensor_data"] == "read by the workers"
    assert [s["stage"] for s in res.stages] == ["calibrate", "lossless", "curves", "encode"]


def test_a_worker_killed_mid_run_changes_nothing(cluster, tmp_path, monkeypatch):
    """A third worker joins, gets jobs, and is SIGKILLed while it holds some; Dask reruns them elsewhere."""
    import threading

    src = _gpt2(tmp_path / "src", n_embd=256, n_layer=4)
    compress(str(src), tmp_path / "local.qnt", codec="direct", bpw=4.0, threads=2, progress=False)
    victim = cluster.worker()
    seen = {"added": 0, "killed_holding": 0, "added_at_kill": None}
    started = threading.Event()
    real_add = QntSink.add

    def add(self, res):
        real_add(self, res)
        seen["added"] += 1
        started.set()

    def killer():  # mid-run (a result is written) and while the victim holds jobs of this run
        started.wait(120)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            held = cluster.client.processing(workers=[victim.address]).get(victim.address)
            if held:
                victim.send_signal(signal.SIGKILL)
                seen["killed_holding"], seen["added_at_kill"] = len(held), seen["added"]
                return
            time.sleep(0.002)

    monkeypatch.setattr(QntSink, "add", add)
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    res = compress(str(src), tmp_path / "dask.qnt", codec="direct", bpw=4.0, threads=2, progress=False,
                   executor="dask://" + cluster.address[6:])
    t.join(10)
    assert victim.poll() is not None, "the third worker was never killed (it got no job in time)"
    assert seen["killed_holding"] > 0 and seen["added_at_kill"] < res.tensors, seen
    assert res.executor["workers"] == 3 and seen["added"] == res.tensors
    assert (tmp_path / "dask.qnt").read_bytes() == (tmp_path / "local.qnt").read_bytes()
    t0 = time.monotonic()
    while victim.address in cluster.client.scheduler_info(n_workers=-1)["workers"]:
        assert time.monotonic() - t0 < 30
        time.sleep(0.1)


def _can_hide() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_hide(), reason="needs root and unshare to give a worker its own view of the files")
def test_a_worker_that_cannot_see_the_source_gets_the_bytes(cluster, tmp_path):
    src = _gpt2(tmp_path / "src", dtype=torch.bfloat16)  # bfloat16 (ml_dtypes) arrays travel too
    compress(str(src), tmp_path / "local.qnt", codec="direct", bpw=4.0, threads=2, progress=False)
    blind = cluster.worker(hide=src)
    try:
        r = subprocess.run([sys.executable, "-m", "quantonium", "compress", str(src), "-o", str(tmp_path / "dask.qnt"),
                            "--codec", "direct", "--bits", "4", "--quiet", "--json",
                            "--executor", "dask://" + cluster.address[6:]], capture_output=True, text=True, env=_env(),
                           timeout=300)
        assert r.returncode == 0, r.stderr
        ex = json.loads(r.stdout)["executor"]
        assert ex["tensor_data"] == "sent by the client" and "1 of 3 workers do not see" in ex["reason"], ex
        assert "tensors sent by the client" in r.stderr
        assert (tmp_path / "dask.qnt").read_bytes() == (tmp_path / "local.qnt").read_bytes()
    finally:
        cluster.stop(blind)


def test_a_job_on_a_worker_that_does_not_see_its_file_is_refused(tmp_path):
    """The per-job check (workers that join after the client's check): a file of another size or mtime."""
    from quantonium.compress.dask_executor import SourceNotVisible, _on_worker, file_identity
    from quantonium.compress.jobs import run_job
    from quantonium.compress.plan import TensorJob
    from quantonium.models import open_source

    src = open_source(str(_gpt2(tmp_path / "src")))
    name = next(n for n in src.names if n.endswith("c_fc.weight"))
    job = TensorJob(name, src.ref(name), "direct", {"bpw": 4.0})
    ident = file_identity(src.paths)
    assert _on_worker(run_job, job, ident).name == name
    path = next(iter(ident))
    with pytest.raises(SourceNotVisible, match="other size or modification time"):
        _on_worker(run_job, job, {path: (ident[path][0], ident[path][1] + 1)})
    with pytest.raises(SourceNotVisible, match="not among"):
        _on_worker(run_job, job, {"/nonexistent/model.safetensors": (1, 1)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_an_unreachable_scheduler_is_one_line_and_no_file(tmp_path):
    src = _gpt2(tmp_path / "src")
    out = tmp_path / "m.qnt"
    env = {**_env(), "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "quantonium", "compress", str(src), "-o", str(out), "--bits", "4",
                        "--executor", f"dask://127.0.0.1:{_free_port()}"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantonium: error: cannot reach the Dask scheduler at tcp://127.0.0.1:"), r.stderr
    assert not out.exists() and not list(tmp_path.glob(".m.qnt*"))
    assert time.monotonic() - t0 < 60
    r = subprocess.run([sys.executable, "-m", "quantonium", "compress", str(src), "-o", str(out), "--bits", "4",
                        "--executor", "ray://x:1"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "dask://HOST:PORT" in r.stderr  # usage


def test_a_cluster_run_killed_mid_file_resumes_locally(cluster, tmp_path):
    """The client SIGKILLed in the middle of a payload (QUANTONIUM_FAULT): --resume without the cluster ends
    with the local run's bytes (the run's key does not name the executor)."""
    src = _gpt2(tmp_path / "src")
    args = [str(src), "--codec", "direct", "--bits", "4", "--quiet"]

    def cli(out, *extra, fault=None):
        env = _env()
        if fault:
            env["QUANTONIUM_FAULT"] = fault
        return subprocess.run([sys.executable, "-m", "quantonium", "compress", args[0], "-o", str(out), *args[1:],
                               *extra], capture_output=True, text=True, env=env, timeout=300)

    compress(str(src), tmp_path / "ref.qnt", codec="direct", bpw=4.0, threads=2, progress=False)
    out = tmp_path / "m.qnt"
    r = cli(out, "--executor", "dask://" + cluster.address[6:], fault="payload:7")
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not out.exists() and (tmp_path / ".m.qnt.partial").exists()
    r = cli(out, "--resume")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (tmp_path / "ref.qnt").read_bytes()

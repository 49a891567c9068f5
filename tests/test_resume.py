"""compress --resume (issue 9): killed at any point, a run continues and ends byte-identical.

The kill points are exact (``QUANTONIUM_FAULT``, ``quantonium.faults``): SIGKILL
in the middle of a payload, in the middle of a checkpoint, in the middle of
the final index, so that the partial file is left as a power cut would leave it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")


def run(args, fault=None, timeout=600):
    env = dict(os.environ)
    env.pop("QUANTONIUM_FAULT", None)
    if fault:
        env["QUANTONIUM_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "quantonium", "compress", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, gpt2_folder_module):
    """A tiny GPT-2 with a tokenizer, its calibration text, and an uninterrupted calibrated run's bytes."""
    src, text = gpt2_folder_module
    d = tmp_path_factory.mktemp("resume")
    cal = d / "cal.txt"
    cal.write_text(text)
    args = [src, "--codec", "auto", "--bits", "4", "--calibration", cal, "--threads", "1", "--quiet"]
    r = run([*args[:1], "-o", d / "ref.qnt", *args[1:]])
    assert r.returncode == 0, r.stderr
    return d, args, (d / "ref.qnt").read_bytes()


@pytest.mark.parametrize("fault", ["payload:2", "payload:9", "checkpoint:6", "index:1"])
def test_killed_calibrated_run_resumes_byte_identical(calibrated, fault):
    d, args, ref = calibrated
    out = d / f"{fault.replace(':', '-')}.qnt"
    r = run([args[0], "-o", out, *args[1:]], fault=fault)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not out.exists() and (d / f".{out.name}.partial").exists()
    r = run([args[0], "-o", out, *args[1:], "--resume"])
    assert r.returncode == 0, r.stderr
    assert "from the resumed partial file" in r.stdout or fault == "payload:2" or fault == "index:1"
    assert out.read_bytes() == ref
    assert not (d / f".{out.name}.partial").exists() and not (d / f".{out.name}.partial.json").exists()


def test_a_partial_file_of_another_run_is_never_mistaken_for_ours(calibrated):
    d, args, _ = calibrated
    out = d / "other.qnt"
    assert run([args[0], "-o", out, *args[1:]], fault="payload:5").returncode == -signal.SIGKILL
    changed = [a if a != "4" else "3" for a in map(str, args[1:])]  # other options: another run
    r = run([args[0], "-o", out, *changed, "--resume"])
    assert r.returncode == 1 and "belongs to another run" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # without --resume the stale partial file is replaced and the run completes
    r = run([args[0], "-o", out, *changed])
    assert r.returncode == 0, r.stderr
    assert not (d / f".{out.name}.partial").exists()


def test_resume_with_nothing_to_resume_starts_over(calibrated):
    d, args, ref = calibrated
    r = run([args[0], "-o", d / "never.qnt", *args[1:], "--resume"])
    assert r.returncode == 0 and "nothing to resume" in r.stderr
    assert (d / "never.qnt").read_bytes() == ref and not (d / ".never.qnt.partial").exists()


def test_per_tensor_run_resumes_too(gpt2_folder, tmp_path):
    src, _ = gpt2_folder
    args = [src, "--codec", "direct", "--bits", "4", "--threads", "2", "--quiet"]
    assert run([args[0], "-o", tmp_path / "ref.qnt", *args[1:]]).returncode == 0
    out = tmp_path / "m.qnt"
    assert run([args[0], "-o", out, *args[1:]], fault="payload:7").returncode == -signal.SIGKILL
    r = run([args[0], "-o", out, *args[1:], "--resume"])
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (tmp_path / "ref.qnt").read_bytes()

"""The repaired binary wheel: built here, installed into a fresh virtual environment, imported."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_repaired_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    env = dict(os.environ)
    env["QN_VENV"] = str(Path(sys.prefix))  # the environment running the tests has auditwheel
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_wheel.sh"), str(tmp_path / "wheelhouse")],
        env=env, capture_output=True, text=True, timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    wheels = list((tmp_path / "wheelhouse").glob("quantonium-*manylinux*.whl"))
    assert len(wheels) == 1, out.stdout

    names = zipfile.ZipFile(wheels[0]).namelist()
    assert any(n.startswith("quantonium_native/_core") and n.endswith(".so") for n in names)
    assert "quantonium_native/_core.pyi" in names and "quantonium_native/py.typed" in names
    assert any("libfftw3" in n for n in names), "auditwheel did not bundle FFTW"
    assert any(n.endswith("LICENSE") for n in names)
    assert {"quantonium/chat/static/index.html", "quantonium/chat/static/app.js", "quantonium/chat/static/style.css"} <= set(names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], capture_output=True, text=True, timeout=900)
    assert inst.returncode == 0, inst.stderr[-3000:]
    check = (
        "import numpy as np, quantonium_native as qn, quantonium;"
        "x = np.random.default_rng(0).standard_normal((4, 100));"
        "err = np.abs(qn.rft_inverse(qn.rft_forward(x)).real - x).max();"
        "assert err < 1e-12, err;"
        "import quantonium_native._core as c; print(c.__file__); print(qn.build_info()['fftw_version'])"
    )
    run = subprocess.run([str(py), "-c", check], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert str(venv) in run.stdout  # imported from the fresh environment, not from the checkout
    assert run.stdout.strip().splitlines()[-1].startswith("fftw-3.")

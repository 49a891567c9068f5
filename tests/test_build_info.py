"""Build report, version, and agreement of every SIMD path this CPU can run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np

import quantonium
import quantonium_native as qn


def test_build_info_reports_fftw_and_simd():
    info = qn.build_info()
    assert info["fftw_version"].startswith("fftw-3.")
    assert info["version"] == qn.__version__ == quantonium.__version__
    assert info["simd_selected"] in info["simd_compiled"]
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        assert info["architecture"] == "x86_64"
        assert info["simd_compiled"] == ["sse2", "avx2", "avx512f"]
    elif machine in ("aarch64", "arm64"):
        # NEON is the ARMv8-A baseline: the only path, always selected
        assert info["architecture"] == "aarch64"
        assert info["simd_compiled"] == ["neon"]
        assert info["simd_selected"] == "neon"
        assert info["rans_kernels"] == "scalar"
    assert info["planner_effort"] in ("estimate", "measure", "patient", "exhaustive")


SCRIPT = """
import json, sys, numpy as np, quantonium_native as qn
rng = np.random.default_rng(5)
x = (rng.standard_normal((3, 1000)) + 1j * rng.standard_normal((3, 1000))).astype(sys.argv[1])
r = rng.standard_normal((3, 1000)).astype(x.real.dtype)
qn.set_planner_effort("estimate")
y = np.concatenate([qn.rft_forward(x).ravel(), qn.rft_inverse(x).ravel(), qn.rft_forward(r).ravel(), qn.rft_inverse(r).ravel()])
print(json.dumps({"simd": qn.build_info()["simd_selected"], "y": [y.real.tolist(), y.imag.tolist()]}))
"""


def run_with(path: str | None, dtype: str) -> tuple[str, np.ndarray]:
    env = dict(os.environ)
    env.pop("QUANTONIUM_SIMD", None)
    if path is not None:
        env["QUANTONIUM_SIMD"] = path
    out = subprocess.run([sys.executable, "-c", SCRIPT, dtype], env=env, capture_output=True, text=True, check=True, timeout=120)
    d = json.loads(out.stdout)
    return d["simd"], np.array(d["y"][0]) + 1j * np.array(d["y"][1])


def test_every_supported_simd_path_agrees():
    default, _ = run_with(None, "complex128")
    compiled = qn.build_info()["simd_compiled"]
    usable = compiled[: compiled.index(default) + 1]  # paths up to the one this CPU selects
    for dtype, tol in (("complex64", 1e-6), ("complex128", 1e-14)):
        _, ref = run_with(None, dtype)
        for path in usable:
            chosen, y = run_with(path, dtype)
            assert chosen == path
            assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < tol, (path, dtype)
    # an unknown request is ignored, and the report says what really runs
    chosen, _ = run_with("no-such-path", "complex64")
    assert chosen == default


def test_type_stub_declares_every_public_name():
    import ast
    from pathlib import Path

    from quantonium_native import _core

    stub = Path(qn.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    declared |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    runtime = {n for n in dir(_core) if not n.startswith("__") or n == "__version__"}
    assert runtime - declared == set()
    assert set(qn.__all__) <= declared
    assert (Path(qn.__file__).parent / "py.typed").exists()

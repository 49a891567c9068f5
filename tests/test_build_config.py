"""The CMake configuration: a missing FFTW stops the build with the command that installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cmake() -> str:
    exe = shutil.which("cmake")
    assert exe is not None, "cmake is a test dependency (pyproject: [test] extra)"
    return exe


def test_missing_fftw_is_a_clear_configure_error(cmake, tmp_path):
    empty = tmp_path / "no-pkgconfig"
    empty.mkdir()
    env = dict(os.environ, PKG_CONFIG_LIBDIR=str(empty), PKG_CONFIG_PATH="")
    out = subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), "-DQN_BUILD_PYTHON=OFF"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode != 0
    assert "FFTW 3 (double and single precision) was not found" in out.stderr
    assert "apt-get install libfftw3-dev" in out.stderr


def test_core_configures_without_python(cmake, tmp_path):
    out = subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), "-DQN_BUILD_PYTHON=OFF"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Quantonium: FFTW 3.3" in out.stdout

"""Thread safety (8 Python threads at once), determinism, and a real GIL release."""

from __future__ import annotations

import threading
import time

import numpy as np

import quantonium_native as qn

from conftest import make, rel_err


def test_eight_threads_give_identical_results(rng):
    inputs = [make(rng, (16, n), np.complex64) for n in (60, 128, 243, 1000, 1024, 4099)]
    inputs += [make(rng, (8, n), np.float64) for n in (64, 101, 2048)]
    qn.clear_caches()  # plans, phases and bases get created concurrently
    results: list[list[np.ndarray] | None] = [None] * 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            res = []
            for x in inputs[t % 3 :] + inputs[: t % 3]:  # each thread in its own order
                res.append((x.shape, qn.rft_forward(x), qn.rft_real_forward(x.real.copy())))
            res.append(("canon", qn.canonical_rft_forward(inputs[0][:, :60]), None))
            results[t] = sorted(res, key=lambda r: str(r[0]))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    serial = sorted(
        [(x.shape, qn.rft_forward(x), qn.rft_real_forward(x.real.copy())) for x in inputs]
        + [("canon", qn.canonical_rft_forward(inputs[0][:, :60]), None)],
        key=lambda r: str(r[0]),
    )
    for res in results:
        assert res is not None
        for (sa, ya, ra), (sb, yb, rb) in zip(res, serial):
            assert sa == sb
            np.testing.assert_array_equal(ya, yb)
            if ra is not None:
                np.testing.assert_array_equal(ra, rb)


def test_nthreads_results_are_reproducible_and_agree(rng):
    x = make(rng, (37, 1000), np.complex128)
    one = qn.rft_forward(x, nthreads=1)
    for nt in (2, 3, 8):
        a, b = qn.rft_forward(x, nthreads=nt), qn.rft_forward(x, nthreads=nt)
        np.testing.assert_array_equal(a, b)
        assert rel_err(a, one) < 1e-14
    # one long row uses FFTW's own threads
    long = make(rng, (1 << 17,), np.complex128)
    assert rel_err(qn.rft_forward(long, nthreads=2), qn.rft_forward(long)) < 1e-13


def test_gil_is_released_during_native_calls(rng):
    """While a long transform runs in a thread, the main thread keeps running Python."""
    x = make(rng, (2048, 4096), np.complex128)  # 8M points, 128 MiB
    out = np.empty_like(x)
    qn.rft_forward(x, out=out)  # plan and warm up
    t0 = time.perf_counter()
    qn.rft_forward(x, out=out)
    call = time.perf_counter() - t0

    done = threading.Event()

    def worker() -> None:
        for _ in range(3):
            qn.rft_forward(x, out=out)
        done.set()

    th = threading.Thread(target=worker)
    stamps = []
    th.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    th.join()
    gaps = np.diff(stamps)
    # With the GIL held, the main thread would stall for a whole call
    # (~call seconds) three times; released, it never stalls for long.
    assert len(stamps) > 1000
    assert gaps.max() < 0.5 * call, (gaps.max(), call)

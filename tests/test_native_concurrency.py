"""Many Python threads call every native entry point at once (issue 11).

Transforms (Phi-RFT, real, canonical, raw FFTW), quantisers, bit packing,
rANS, the basis getters, build_info, and the global state (clear_caches drops
plans, phase tables and bases while other threads use them; the planner
effort is set while others plan). Every result must equal the one computed
alone. `bash scripts/sanitize.sh tsan` runs this file under ThreadSanitizer
(halt_on_error=1), which turns any data race in the native code into a
failure; in the ordinary suite it checks the results.
"""

from __future__ import annotations

import threading

import numpy as np

import quantonium_native as qn

from conftest import make, rel_err

THREADS = 8
ROUNDS = 3


def entry_points(rng):
    """name -> (call, exact): exact results are compared bit for bit, the others
    (transforms, whose FFTW plans may be re-measured after clear_caches) to rounding."""
    c64 = make(rng, (6, 48), np.complex64)
    f64 = make(rng, (5, 33), np.float64)
    f32 = make(rng, (4, 40), np.float32)
    w = make(rng, (4096,), np.float32)
    steps = np.full(4096 // 64, 0.05, np.float32)
    q8 = qn.quantize_uniform(w, steps, group_size=64)
    q16 = qn.quantize_uniform(w, steps / 100, group_size=64, symbol_dtype="int16")
    packed, scales, mins = qn.quantize_fixed(w, 4, group_size=32, asymmetric=True)
    stream8, stream16 = qn.rans_encode(q8), qn.rans_encode(q16)
    sym5 = qn.unpack_bits(qn.pack_bits(q8.view(np.uint8) & 31, 5), 5, q8.size)
    return {
        "rft_forward": (lambda: qn.rft_forward(c64, nthreads=2), False),
        "rft_inverse": (lambda: qn.rft_inverse(f64, beta=0.5, sigma=2.0), False),
        "rft_real_forward": (lambda: qn.rft_real_forward(f32, axis=0, nthreads=2), False),
        "rft_real_inverse": (lambda: qn.rft_real_inverse(f64), False),
        "rft_long_row": (lambda: qn.rft_forward(w, nthreads=2), False),  # FFTW's own threads
        "canonical_forward": (lambda: qn.canonical_rft_forward(f32, nthreads=2), False),
        "canonical_inverse": (lambda: qn.canonical_rft_inverse(c64[:, :24]), False),
        "canonical_basis": (lambda: qn.canonical_basis(24), True),
        "canonical_error": (lambda: np.array(qn.canonical_unitarity_error(33)), True),
        "fftw_c2c": (lambda: qn._core._fftw_c2c(c64, nthreads=2), False),
        "fftw_c2c_blocked": (lambda: qn._core._fftw_c2c(c64, nthreads=2, blocked=True), False),
        "quantize_uniform": (lambda: qn.quantize_uniform(w, steps, group_size=64, nthreads=3), True),
        "dequantize_uniform": (lambda: qn.dequantize_uniform(q16, steps / 100, group_size=64, nthreads=2), True),
        "quantize_fixed": (lambda: np.concatenate([a.view(np.uint8).ravel() for a in qn.quantize_fixed(w, 3, group_size=64, nthreads=2)[:2]]), True),
        "dequantize_fixed": (lambda: qn.dequantize_fixed(packed, scales, mins, bits=4, group_size=32, count=w.size, nthreads=3), True),
        "pack_bits": (lambda: qn.pack_bits(sym5, 5), True),
        "unpack_bits": (lambda: qn.unpack_bits(qn.pack_bits(sym5, 5), 5, sym5.size), True),
        "rans_encode": (lambda: np.frombuffer(qn.rans_encode(q8), np.uint8), True),
        "rans_decode_int8": (lambda: qn.rans_decode(stream8, q8.size, "int8"), True),
        "rans_decode_int16": (lambda: qn.rans_decode(stream16, q16.size, "int16"), True),
        "build_info": (lambda: np.array(sorted(qn.build_info().items()), dtype=object), True),
    }


def test_every_entry_point_from_many_threads_at_once(rng):
    calls = entry_points(rng)
    names = list(calls)
    alone = {name: calls[name][0]() for name in names}
    results: list[dict[str, np.ndarray]] = [{} for _ in range(THREADS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            barrier.wait()
            order = names[t * 3 % len(names) :] + names[: t * 3 % len(names)]  # each thread in its own order
            for r in range(ROUNDS):
                for i, name in enumerate(order):
                    results[t][name] = calls[name][0]()
                    if t == 0 and i % 7 == 3:
                        qn.clear_caches()  # plans, phase tables and bases vanish under the others
                    if t == 1 and i % 5 == 2:
                        qn.set_planner_effort("measure")  # the default: only the lock is exercised
            barrier.wait()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for t in range(THREADS):
        for name in names:
            got, want = results[t][name], alone[name]
            if calls[name][1]:
                np.testing.assert_array_equal(got, want, err_msg=f"thread {t}: {name}")
            else:
                tol = 1e-5 if got.dtype in (np.complex64, np.float32) else 1e-12
                assert got.shape == want.shape and rel_err(got, want) < tol, f"thread {t}: {name}"

"""quantonium_native.byte_planes / or_byte_plane: the lossless codec's split, against a numpy oracle."""

import numpy as np
import pytest

import quantonium_native as qn

# dtype: (uint, exponent shift, exponent mask, mantissa bits, sign shift) -- the layout of lossless.py's docstring
LAYOUT = {
    "float32": (np.uint32, 23, 0xFF, 23, 31),
    "float16": (np.uint16, 10, 0x1F, 10, 15),
    "bfloat16": (np.uint16, 7, 0xFF, 7, 15),
}


def oracle_planes(u: np.ndarray, name: str) -> list[np.ndarray]:
    _, eshift, emask, mbits, sshift = LAYOUT[name]
    u = u.reshape(-1).astype(np.uint64)
    exp = ((u >> eshift) & emask).astype(np.uint8)
    sm = ((u >> sshift) << mbits) | (u & ((1 << mbits) - 1))
    nplanes = (mbits + 1 + 7) // 8
    return [exp] + [((sm >> (8 * i)) & 0xFF).astype(np.uint8) for i in range(nplanes)]


def patterns(name: str, n: int, seed: int) -> np.ndarray:
    ut = LAYOUT[name][0]
    rng = np.random.default_rng(seed)
    if ut is np.uint16:
        return np.arange(1 << 16, dtype=np.uint16)  # every pattern: NaNs, infinities, subnormals, -0
    u = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x00000001, 0x807FFFFF], np.uint32)
    return np.concatenate([special, u, rng.standard_normal(n).astype(np.float32).view(np.uint32)])


@pytest.mark.parametrize("name", list(LAYOUT))
@pytest.mark.parametrize("nthreads", [1, 3])
def test_planes_match_the_oracle_and_join_back(name, nthreads):
    u = patterns(name, 300_001, 1)
    planes = qn.byte_planes(u, name, nthreads=nthreads)
    want = oracle_planes(u, name)
    assert len(planes) == len(want)
    for p, w in zip(planes, want):
        assert p.dtype == np.uint8 and p.shape == (u.size,)
        np.testing.assert_array_equal(p, w)
    out = np.zeros(u.size, u.dtype)
    for i in reversed(range(len(planes))):  # order does not matter: the planes own disjoint bits
        qn.or_byte_plane(out, planes[i], i, name, nthreads=nthreads)
    np.testing.assert_array_equal(out, u)


def test_a_corrupt_exponent_plane_decodes_as_the_old_python_join_did():
    # float16's exponent has 5 bits; a hostile plane may hold any byte: the join shifts it unmasked, as before
    plane = np.arange(256, dtype=np.uint8)
    out = np.zeros(256, np.uint16)
    qn.or_byte_plane(out, plane, 0, "float16")
    np.testing.assert_array_equal(out, (plane.astype(np.uint32) << 10).astype(np.uint16))


def test_shapes_are_read_in_c_order():
    u = np.arange(12, dtype=np.uint32).reshape(3, 4) * 0x01010101
    np.testing.assert_array_equal(qn.byte_planes(u, "float32")[1], qn.byte_planes(u.reshape(-1), "float32")[1])
    np.testing.assert_array_equal(qn.byte_planes(u.T, "float32")[1], qn.byte_planes(u.T.copy(), "float32")[1])


def test_empty():
    assert [p.size for p in qn.byte_planes(np.zeros(0, np.uint16), "bfloat16")] == [0, 0]


@pytest.mark.parametrize("call, err, msg", [
    (lambda: qn.byte_planes(np.zeros(4, np.float32), "float32"), TypeError, "uint32 bit patterns"),
    (lambda: qn.byte_planes(np.zeros(4, np.uint32), "float16"), TypeError, "uint16"),
    (lambda: qn.byte_planes(np.zeros(4, np.uint32), "float64"), ValueError, "layout must be"),
    (lambda: qn.byte_planes(np.zeros(4, np.uint32), "float32", nthreads=0), ValueError, "nthreads"),
    (lambda: qn.or_byte_plane(np.zeros(4, np.uint32), np.zeros(3, np.uint8), 0, "float32"), ValueError, "3 bytes for 4"),
    (lambda: qn.or_byte_plane(np.zeros(4, np.uint32), np.zeros(4, np.uint8), 4, "float32"), ValueError, "index must be in 0..3"),
    (lambda: qn.or_byte_plane(np.zeros(4, np.uint16), np.zeros(4, np.uint8), 2, "bfloat16"), ValueError, "0..1"),
    (lambda: qn.or_byte_plane(np.zeros(4, np.uint32), np.zeros(4, np.int8), 0, "float32"), TypeError, "uint8"),
    (lambda: qn.or_byte_plane(np.zeros(8, np.uint32)[::2], np.zeros(4, np.uint8), 0, "float32"), ValueError, "C-contiguous"),
])
def test_bad_arguments_are_refused(call, err, msg):
    with pytest.raises(err, match=msg):
        call()


def test_a_read_only_output_is_refused():
    out = np.zeros(4, np.uint32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        qn.or_byte_plane(out, np.zeros(4, np.uint8), 0, "float32")


@pytest.mark.parametrize("name", list(LAYOUT))
def test_join_equals_oring_every_plane(name):
    u = patterns(name, 100_003, 2)
    planes = qn.byte_planes(u, name)
    np.testing.assert_array_equal(qn.join_byte_planes(planes, name, nthreads=2), u)
    rng = np.random.default_rng(3)  # hostile planes (any byte anywhere): the same bits as the plane-by-plane OR
    junk = [rng.integers(0, 256, u.size, dtype=np.uint8) for _ in planes]
    ored = np.zeros(u.size, u.dtype)
    for i, p in enumerate(junk):
        qn.or_byte_plane(ored, p, i, name)
    np.testing.assert_array_equal(qn.join_byte_planes(junk, name), ored)


@pytest.mark.parametrize("call, err, msg", [
    (lambda: qn.join_byte_planes([np.zeros(4, np.uint8)] * 3, "float32"), ValueError, "float32 has 4 planes, got 3"),
    (lambda: qn.join_byte_planes([np.zeros(4, np.uint8), np.zeros(5, np.uint8)], "bfloat16"), ValueError, "hold 4 and 5"),
    (lambda: qn.join_byte_planes([np.zeros(4, np.uint8), np.zeros(4, np.int16)], "bfloat16"), TypeError, "plane 1"),
])
def test_join_refuses_bad_planes(call, err, msg):
    with pytest.raises(err, match=msg):
        call()

// Bindings of the entropy stage: the rANS coder (both stream formats), its
// size estimate, and the symbol histograms that rate allocation uses.
#include <string>

#include "bind_common.hpp"
#include "quantonium/entropy.hpp"
#include "quantonium/rd.hpp"

namespace qnpy {

namespace {

py::array contiguous(const py::array& a) {
  return (a.flags() & py::array::c_style) ? a : contiguous_copy(a);
}

void check_threads(int nthreads, const char* fname) {
  if (nthreads < 1) throw py::value_error(std::string(fname) + ": nthreads must be >= 1");
}

/// A read-only byte buffer (bytes, bytearray, memoryview, uint8 array).
struct ByteView {
  py::buffer_info info;
  const std::uint8_t* ptr() const { return static_cast<const std::uint8_t*>(info.ptr); }
  qn::index_t size() const { return static_cast<qn::index_t>(info.size); }
};

ByteView byte_view(const py::object& obj, const char* fname) {
  if (!PyObject_CheckBuffer(obj.ptr()))
    throw py::type_error(std::string(fname) + ": expected a bytes-like object");
  py::buffer b = py::reinterpret_borrow<py::buffer>(obj);
  ByteView out{b.request()};
  if (out.info.itemsize != 1 || out.info.ndim > 1 ||
      (out.info.ndim == 1 && out.info.strides[0] != 1))
    throw py::type_error(std::string(fname) + ": expected contiguous bytes (itemsize 1)");
  return out;
}

py::bytes rans_encode(const py::object& so, int format, int nthreads, int ways, int chunk_log2,
                      int scale_bits) {
  const char* fname = "rans_encode";
  check_threads(nthreads, fname);
  if (format != 1 && format != 2) throw py::value_error(std::string(fname) + ": format must be 1 or 2");
  py::array s = contiguous(as_array(so));
  qn::RansOptions opts;
  opts.format = format;
  opts.nthreads = nthreads;
  opts.ways = ways;
  opts.chunk_log2 = chunk_log2;
  opts.scale_bits = scale_bits;
  std::vector<std::uint8_t> enc;
  auto go = [&](auto tag) {
    using S = decltype(tag);
    const S* p = static_cast<const S*>(s.data());
    const qn::index_t n = s.size();
    py::gil_scoped_release release;
    enc = qn::rans_encode(p, n, opts);
  };
  if (s.dtype().equal(py::dtype::of<std::int8_t>()))
    go(std::int8_t{});
  else if (s.dtype().equal(py::dtype::of<std::int16_t>()))
    go(std::int16_t{});
  else if (s.dtype().equal(py::dtype::of<std::uint8_t>()))
    go(std::uint8_t{});
  else
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(s) +
                         "; expected one of int8, int16, uint8");
  return py::bytes(reinterpret_cast<const char*>(enc.data()), enc.size());
}

py::array rans_decode(const py::object& data, qn::index_t count, const std::string& dtype,
                      int nthreads) {
  const char* fname = "rans_decode";
  if (count < 0) throw py::value_error(std::string(fname) + ": count must be >= 0");
  check_threads(nthreads, fname);
  const ByteView b = byte_view(data, fname);
  if (dtype != "int8" && dtype != "int16" && dtype != "uint8")
    throw py::value_error(std::string(fname) + ": dtype must be 'int8', 'int16' or 'uint8'");
  // the stream's count, table and chunk lengths are checked against the
  // caller's count before the output is allocated
  {
    py::gil_scoped_release release;
    if (dtype == "int8")
      qn::rans_check_stream<std::int8_t>(b.ptr(), b.size(), count);
    else if (dtype == "int16")
      qn::rans_check_stream<std::int16_t>(b.ptr(), b.size(), count);
    else
      qn::rans_check_stream<std::uint8_t>(b.ptr(), b.size(), count);
  }
  py::array out;
  if (dtype == "int8")
    out = py::array(py::dtype::of<std::int8_t>(), std::vector<py::ssize_t>{count});
  else if (dtype == "int16")
    out = py::array(py::dtype::of<std::int16_t>(), std::vector<py::ssize_t>{count});
  else if (dtype == "uint8")
    out = py::array(py::dtype::of<std::uint8_t>(), std::vector<py::ssize_t>{count});
  else
    throw py::value_error(std::string(fname) + ": dtype must be 'int8', 'int16' or 'uint8'");
  // The output is sized from the caller's count, never from the stream, and
  // the stream's own count is checked before anything is written.
  void* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    if (dtype == "int8")
      qn::rans_decode(b.ptr(), b.size(), count, static_cast<std::int8_t*>(o), nthreads);
    else if (dtype == "int16")
      qn::rans_decode(b.ptr(), b.size(), count, static_cast<std::int16_t*>(o), nthreads);
    else
      qn::rans_decode(b.ptr(), b.size(), count, static_cast<std::uint8_t*>(o), nthreads);
  }
  return out;
}

py::dict rans_stream_info(const py::object& data) {
  const ByteView b = byte_view(data, "rans_stream_info");
  py::dict d;
  d["format"] = qn::rans_stream_format(b.ptr(), b.size());
  d["count"] = qn::rans_stream_count(b.ptr(), b.size());
  return d;
}

py::tuple rans_stream_size(const py::object& counts_o, std::int64_t min_symbol) {
  const char* fname = "rans_stream_size";
  py::array a = as_array(counts_o);
  if (!a.dtype().equal(py::dtype::of<std::int64_t>()))
    throw py::type_error(std::string(fname) + ": counts must be int64, got " + dtype_str(a));
  if (a.ndim() != 1) throw py::value_error(std::string(fname) + ": counts must be 1-D");
  a = contiguous(a);
  const auto* p = static_cast<const std::int64_t*>(a.data());
  std::vector<std::uint64_t> counts(static_cast<std::size_t>(a.size()));
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (p[i] < 0) throw py::value_error(std::string(fname) + ": counts must be >= 0");
    counts[i] = static_cast<std::uint64_t>(p[i]);
  }
  // trim absent symbols at both ends (the stream's table starts and ends with present ones)
  std::size_t first = 0, last = counts.size();
  while (first < last && counts[first] == 0) ++first;
  while (last > first && counts[last - 1] == 0) --last;
  if (first > 0 && __builtin_add_overflow(min_symbol, static_cast<std::int64_t>(first), &min_symbol))
    throw py::value_error(std::string(fname) + ": min_symbol out of range");
  std::vector<std::uint64_t> used(counts.begin() + static_cast<std::ptrdiff_t>(first),
                                  counts.begin() + static_cast<std::ptrdiff_t>(last));
  if (!used.empty() && (min_symbol < -32768 || min_symbol + static_cast<std::int64_t>(used.size()) - 1 > 65535))
    throw py::value_error(std::string(fname) + ": symbols outside int16 / uint8");
  const qn::RansSizeEstimate e = qn::rans_estimate_size(used, min_symbol);
  return py::make_tuple(e.header_bytes, e.payload_bytes);
}

py::tuple quantize_histograms(const py::object& co, const py::object& steps_o, int nthreads) {
  const char* fname = "quantize_histograms";
  check_threads(nthreads, fname);
  py::array c = as_array(co), st = as_array(steps_o);
  if (!c.dtype().equal(py::dtype::of<float>()))
    throw py::type_error(std::string(fname) + ": c must be float32, got " + dtype_str(c));
  if (!st.dtype().equal(py::dtype::of<float>()))
    throw py::type_error(std::string(fname) + ": steps must be float32, got " + dtype_str(st));
  if (st.ndim() != 1) throw py::value_error(std::string(fname) + ": steps must be 1-D");
  c = contiguous(c);
  st = contiguous(st);
  std::vector<qn::StepHistogram> h;
  {
    const float* cp = static_cast<const float*>(c.data());
    const float* sp = static_cast<const float*>(st.data());
    const qn::index_t n = c.size(), ns = st.size();
    py::gil_scoped_release release;
    h = qn::quantize_histograms(cp, n, sp, ns, nthreads);
  }
  const auto ns = static_cast<py::ssize_t>(h.size());
  py::array_t<std::int64_t> mins(ns);
  py::array_t<double> sse(ns);
  py::list counts;
  for (py::ssize_t k = 0; k < ns; ++k) {
    const auto& hk = h[static_cast<std::size_t>(k)];
    mins.mutable_data()[k] = hk.min_symbol;
    sse.mutable_data()[k] = hk.sse;
    py::array_t<std::int64_t> ck(static_cast<py::ssize_t>(hk.counts.size()));
    std::copy(hk.counts.begin(), hk.counts.end(), ck.mutable_data());
    counts.append(ck);
  }
  return py::make_tuple(mins, counts, sse);
}

}  // namespace

void add_entropy(py::module_& m) {
  using namespace pybind11::literals;
  m.def("rans_encode", &rans_encode, R"doc(
Order-0 rANS coding of int8, int16 or uint8 symbols (flattened in C order).

Returns a self-describing stream (cpp/include/quantonium/entropy.hpp).
Format 2 (default): up to 32 interleaved states, 16-bit renormalisation,
chunks of 2^20 symbols sharing one table, coded by ``nthreads`` threads; the
bytes never depend on ``nthreads``. Format 1: the single-state stream of
earlier versions (kept for compatibility tests and benchmarks).

Parameters
----------
symbols : ndarray of int8, int16 or uint8 (span of at most 65536 values)
format : {1, 2}
nthreads : int
ways : int, optional
    Format 2: interleaved states (1, 2, 4, 8, 16, 32); 0 = by size
    (1 below 2^13 symbols, 8 below 2^16, else 32).
chunk_log2 : int, optional
    Format 2: chunks of 2^chunk_log2 symbols, 10..40; 0 = 20.
scale_bits : int, optional
    Format 2: frequencies sum to 2^scale_bits, 10..16; 0 = by the number
    of distinct symbols (clamp(ceil(log2 n) + 4, 12, 16)).

Returns
-------
bytes

Raises
------
ValueError
    If the span exceeds 65536, or an option is out of range.
)doc",
        "symbols"_a, py::kw_only(), "format"_a = 2, "nthreads"_a = 1, "ways"_a = 0,
        "chunk_log2"_a = 0, "scale_bits"_a = 0);
  m.def("rans_decode", &rans_decode, R"doc(
Decodes exactly ``count`` symbols of ``dtype`` ("int8", "int16", "uint8")
from a stream of either format (told apart by its first bytes).

Any inconsistency (count, table, truncation, trailing bytes, final states,
overflowing sizes) raises ValueError; the output is sized from ``count``,
never from the stream. ``nthreads`` decodes a format-2 stream's chunks in
parallel (same result for any value).
)doc",
        "data"_a, "count"_a, "dtype"_a, py::kw_only(), "nthreads"_a = 1);
  m.def("rans_stream_info", &rans_stream_info, R"doc(
``{"format": 1 or 2, "count": symbols}`` of a stream (reads its header only).
)doc",
        "data"_a);
  m.def("rans_stream_size", &rans_stream_size, R"doc(
Predicted size of the format-2 stream of symbols with these counts.

Parameters
----------
counts : ndarray of int64
    counts[k] = number of symbols equal to ``min_symbol + k`` (zeros at
    either end are trimmed).
min_symbol : int

Returns
-------
(header_bytes, payload_bytes)
    ``header_bytes`` is exact (magic, count, table; everything before the
    chunk lengths). ``payload_bytes`` is an estimate: the cross-entropy of
    the counts under the normalised frequencies the encoder would use, in
    16-bit words, plus the flushed states and chunk lengths.
)doc",
        "counts"_a, py::kw_only(), "min_symbol"_a = 0);
  m.def("quantize_histograms", &quantize_histograms, R"doc(
Symbol histograms and squared errors of uniform quantisation at many steps.

For each step s: ``q = rint(c / s)`` (float32 division, half to even:
exactly ``quantize_uniform(c, [s], dead_zone=0)``), and the squared error
``sum((c - float32(q) * s)**2)`` in float64 (the error of
``dequantize_uniform``). c is read once for all steps; results do not
depend on ``nthreads``.

Parameters
----------
c : ndarray of float32 (any shape; flattened)
steps : ndarray of float32, 1-D, finite, > 0
nthreads : int

Returns
-------
(min_symbols, counts, sse)
    ``min_symbols``: int64 array, one per step; ``counts``: list of int64
    arrays (counts[k][j] = number of symbols equal to min_symbols[k] + j);
    ``sse``: float64 array.

Raises
------
ValueError
    If c is not finite, a step is not finite and > 0, or a symbol falls
    outside int16 (the message names the step).
)doc",
        "c"_a, "steps"_a, py::kw_only(), "nthreads"_a = 1);
}

}  // namespace qnpy

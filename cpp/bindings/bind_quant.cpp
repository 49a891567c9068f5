// Bindings of the quantisers and bit packing (the entropy coder: bind_entropy.cpp).
#include <cstring>

#include "bind_common.hpp"
#include "quantonium/quant.hpp"

namespace qnpy {

namespace {

py::array_t<float> float32_steps(const py::object& obj, qn::index_t groups, const char* fname) {
  py::array a = as_array(obj);
  if (!a.dtype().equal(py::dtype::of<float>()))
    throw py::type_error(std::string(fname) + ": steps must be float32, got " + dtype_str(a));
  if (a.ndim() != 1 || a.shape(0) != groups)
    throw py::value_error(std::string(fname) + ": steps must be 1-D with one step per group (" +
                          std::to_string(groups) + "), got shape " + shape_str(shape_of(a)));
  return py::array_t<float>(c_contig(a));
}

qn::index_t check_group(qn::index_t group_size, const char* fname) {
  if (group_size < 1)
    throw py::value_error(std::string(fname) + ": group_size must be >= 1, got " +
                          std::to_string(group_size));
  return group_size;
}

void check_threads(int nthreads, const char* fname) { check_nthreads(nthreads, fname); }

/// ceil(count * bits / 8), or ValueError (naming fname) if count is negative
/// or the size does not fit in 64 bits.
qn::index_t packed_size(qn::index_t count, int bits, const char* fname) {
  return named(fname, [&] { return qn::packed_bytes(count, bits); });
}

/// Groups of group_size covering count values (ValueError if out of range).
qn::index_t groups_of(qn::index_t count, qn::index_t group_size, const char* fname) {
  return named(fname, [&] { return qn::group_count(count, group_size); });
}

/// A read-only byte buffer (bytes, bytearray, memoryview, uint8 array).
struct Bytes {
  py::buffer_info info;
  const std::uint8_t* ptr() const { return static_cast<const std::uint8_t*>(info.ptr); }
  qn::index_t size() const { return static_cast<qn::index_t>(info.size); }
};

Bytes bytes_of(const py::object& obj, const char* fname) {
  if (!PyObject_CheckBuffer(obj.ptr()))
    throw py::type_error(std::string(fname) + ": expected a bytes-like object");
  py::buffer b = py::reinterpret_borrow<py::buffer>(obj);
  Bytes out{b.request()};
  if (out.info.itemsize != 1 || out.info.ndim > 1 ||
      (out.info.ndim == 1 && out.info.strides[0] != 1))
    throw py::type_error(std::string(fname) + ": expected contiguous bytes (itemsize 1)");
  return out;
}

py::array quantize_uniform(const py::object& xo, const py::object& steps_o, qn::index_t group_size,
                           double dead_zone, const std::string& symbol_dtype, int nthreads) {
  const char* fname = "quantize_uniform";
  py::array x = as_array(xo);
  const DKind k = dkind(x);
  if (!is_real(k))
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(x) +
                         "; expected one of float32, float64");
  if (symbol_dtype != "int8" && symbol_dtype != "int16")
    throw py::value_error(std::string(fname) + ": symbol_dtype must be 'int8' or 'int16'");
  check_group(group_size, fname);
  check_threads(nthreads, fname);
  if (!(dead_zone >= 0.0 && dead_zone < 0.5))
    throw py::value_error(std::string(fname) + ": dead_zone must be in [0, 0.5)");
  x = c_contig(x);
  const qn::index_t n = x.size();
  auto steps = float32_steps(steps_o, groups_of(n, group_size, fname), fname);
  for (qn::index_t g = 0; g < steps.size(); ++g)
    if (!(steps.data()[g] > 0.0f) || !std::isfinite(steps.data()[g]))
      throw py::value_error(std::string(fname) + ": every step must be finite and > 0");
  const bool wide = symbol_dtype == "int16";
  py::array q = wide ? py::array(py::dtype::of<std::int16_t>(), shape_of(x))
                     : py::array(py::dtype::of<std::int8_t>(), shape_of(x));
  qn::index_t clamped = 0;
  auto go = [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.data());
    py::gil_scoped_release release;
    if (wide)
      clamped = qn::quantize_uniform(xp, n, steps.data(), group_size, dead_zone,
                                     static_cast<std::int16_t*>(q.mutable_data()), nthreads);
    else
      clamped = qn::quantize_uniform(xp, n, steps.data(), group_size, dead_zone,
                                     static_cast<std::int8_t*>(q.mutable_data()), nthreads);
  };
  if (k == DKind::f32)
    go(float{});
  else
    go(double{});
  if (clamped)
    throw py::value_error(std::string(fname) + ": " + std::to_string(clamped) +
                          " values do not fit in " + symbol_dtype +
                          " symbols at these steps (or are not finite); use a larger step" +
                          (wide ? "" : " or symbol_dtype='int16'"));
  return q;
}

py::array dequantize_uniform(const py::object& qo, const py::object& steps_o,
                             qn::index_t group_size, const std::string& dtype, int nthreads) {
  const char* fname = "dequantize_uniform";
  py::array q = as_array(qo);
  const bool wide = q.dtype().equal(py::dtype::of<std::int16_t>());
  if (!wide && !q.dtype().equal(py::dtype::of<std::int8_t>()))
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(q) +
                         "; expected one of int8, int16");
  if (dtype != "float32" && dtype != "float64")
    throw py::value_error(std::string(fname) + ": dtype must be 'float32' or 'float64'");
  check_group(group_size, fname);
  check_threads(nthreads, fname);
  q = c_contig(q);
  const qn::index_t n = q.size();
  auto steps = float32_steps(steps_o, groups_of(n, group_size, fname), fname);
  const bool f64 = dtype == "float64";
  py::array out = f64 ? py::array(py::dtype::of<double>(), shape_of(q))
                      : py::array(py::dtype::of<float>(), shape_of(q));
  auto go = [&](auto stag, auto ttag) {
    using S = decltype(stag);
    using T = decltype(ttag);
    const S* qp = static_cast<const S*>(q.data());
    T* op = static_cast<T*>(out.mutable_data());
    py::gil_scoped_release release;
    qn::dequantize_uniform(qp, n, steps.data(), group_size, op, nthreads);
  };
  if (wide)
    f64 ? go(std::int16_t{}, double{}) : go(std::int16_t{}, float{});
  else
    f64 ? go(std::int8_t{}, double{}) : go(std::int8_t{}, float{});
  return out;
}

py::tuple quantize_fixed(const py::object& xo, int bits, qn::index_t group_size, bool asymmetric,
                         int nthreads) {
  const char* fname = "quantize_fixed";
  py::array x = as_array(xo);
  const DKind k = dkind(x);
  if (!is_real(k))
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(x) +
                         "; expected one of float32, float64");
  if (bits < 2 || bits > 8) throw py::value_error(std::string(fname) + ": bits must be in 2..8");
  if (group_size < 8 || group_size % 8)
    throw py::value_error(std::string(fname) + ": group_size must be a positive multiple of 8");
  check_threads(nthreads, fname);
  x = c_contig(x);
  const qn::index_t n = x.size(), ng = groups_of(n, group_size, fname);
  py::array_t<std::uint8_t> packed(packed_size(n, bits, fname));
  py::array scales(py::dtype("float16"), std::vector<py::ssize_t>{ng});
  py::object mins = py::none();
  std::uint16_t* mp = nullptr;
  if (asymmetric) {
    py::array m(py::dtype("float16"), std::vector<py::ssize_t>{ng});
    mp = static_cast<std::uint16_t*>(m.mutable_data());
    mins = m;
  }
  bool ok = true;
  auto go = [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.data());
    auto* sp = static_cast<std::uint16_t*>(scales.mutable_data());
    auto* pp = packed.mutable_data();
    py::gil_scoped_release release;
    ok = qn::quantize_fixed(xp, n, bits, group_size, sp, mp, pp, nthreads);
  };
  if (k == DKind::f32)
    go(float{});
  else
    go(double{});
  if (!ok)
    throw py::value_error(std::string(fname) +
                          ": a group's scale or minimum is not finite in float16 (values too "
                          "large, or not finite)");
  return py::make_tuple(packed, scales, mins);
}

py::array dequantize_fixed(const py::object& packed_o, const py::object& scales_o,
                           const py::object& mins_o, int bits, qn::index_t group_size,
                           qn::index_t count, int nthreads) {
  const char* fname = "dequantize_fixed";
  if (bits < 2 || bits > 8) throw py::value_error(std::string(fname) + ": bits must be in 2..8");
  if (group_size < 8 || group_size % 8)
    throw py::value_error(std::string(fname) + ": group_size must be a positive multiple of 8");
  if (count < 0) throw py::value_error(std::string(fname) + ": count must be >= 0");
  check_threads(nthreads, fname);
  const Bytes packed = bytes_of(packed_o, fname);
  const qn::index_t expected = packed_size(count, bits, fname);
  if (packed.size() != expected)
    throw py::value_error(std::string(fname) + ": packed data has " +
                          std::to_string(packed.size()) + " bytes, expected " +
                          std::to_string(expected) + " for count=" + std::to_string(count) +
                          " at bits=" + std::to_string(bits));
  const qn::index_t ng = groups_of(count, group_size, fname);
  auto half_array = [&](const py::object& o, const char* what) {
    py::array a = as_array(o);
    if (!a.dtype().equal(py::dtype("float16")))
      throw py::type_error(std::string(fname) + ": " + what + " must be float16, got " +
                           dtype_str(a));
    if (a.ndim() != 1 || a.shape(0) != ng)
      throw py::value_error(std::string(fname) + ": " + what + " must be 1-D with " +
                            std::to_string(ng) + " entries");
    return c_contig(a);
  };
  py::array scales = half_array(scales_o, "scales");
  py::array mins;
  if (!mins_o.is_none()) mins = half_array(mins_o, "mins");
  py::array_t<float> out(count);
  const auto* sp = static_cast<const std::uint16_t*>(scales.data());
  const auto* mp = mins_o.is_none() ? nullptr : static_cast<const std::uint16_t*>(mins.data());
  auto* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    qn::dequantize_fixed(packed.ptr(), count, bits, group_size, sp, mp, op, nthreads);
  }
  return out;
}

py::array pack_bits(const py::object& vo, int bits) {
  const char* fname = "pack_bits";
  py::array v = as_array(vo);
  const bool wide = v.dtype().equal(py::dtype::of<std::uint16_t>());
  if (!wide && !v.dtype().equal(py::dtype::of<std::uint8_t>()))
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(v) +
                         "; expected one of uint8, uint16");
  if (bits < 1 || bits > (wide ? 16 : 8))
    throw py::value_error(std::string(fname) + ": bits must be in 1.." + (wide ? "16" : "8"));
  v = c_contig(v);
  const qn::index_t n = v.size();
  const std::uint32_t limit = 1u << bits;
  py::array_t<std::uint8_t> out(packed_size(n, bits, fname));
  auto go = [&](auto tag) {
    using U = decltype(tag);
    const U* p = static_cast<const U*>(v.data());
    for (qn::index_t i = 0; i < n; ++i)
      if (p[i] >= limit)
        throw py::value_error(std::string(fname) + ": value " + std::to_string(p[i]) +
                              " does not fit in " + std::to_string(bits) + " bits");
    auto* o = out.mutable_data();
    py::gil_scoped_release release;
    qn::pack_bits(p, n, bits, o);
  };
  if (wide)
    go(std::uint16_t{});
  else
    go(std::uint8_t{});
  return out;
}

py::array unpack_bits(const py::object& data, int bits, qn::index_t count, const std::string& dtype) {
  const char* fname = "unpack_bits";
  if (dtype != "uint8" && dtype != "uint16")
    throw py::value_error(std::string(fname) + ": dtype must be 'uint8' or 'uint16'");
  const bool wide = dtype == "uint16";
  if (bits < 1 || bits > (wide ? 16 : 8))
    throw py::value_error(std::string(fname) + ": bits must be in 1.." + (wide ? "16" : "8"));
  if (count < 0) throw py::value_error(std::string(fname) + ": count must be >= 0");
  const Bytes b = bytes_of(data, fname);
  const qn::index_t expected = packed_size(count, bits, fname);
  if (b.size() != expected)
    throw py::value_error(std::string(fname) + ": got " + std::to_string(b.size()) +
                          " bytes, expected " + std::to_string(expected) + " for count=" +
                          std::to_string(count) + " at bits=" + std::to_string(bits));
  py::array out = wide ? py::array(py::dtype::of<std::uint16_t>(), std::vector<py::ssize_t>{count})
                       : py::array(py::dtype::of<std::uint8_t>(), std::vector<py::ssize_t>{count});
  void* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    if (wide)
      qn::unpack_bits(b.ptr(), count, bits, static_cast<std::uint16_t*>(o));
    else
      qn::unpack_bits(b.ptr(), count, bits, static_cast<std::uint8_t*>(o));
  }
  return out;
}

}  // namespace

void add_quant(py::module_& m) {
  using namespace pybind11::literals;
  m.def("quantize_uniform", &quantize_uniform, R"doc(
Uniform scalar quantisation with one step per group.

``t = x / step_g`` (in x's precision), ``q = rint(t)`` (half to even), and
``q = 0`` where ``|t| < 0.5 + dead_zone``. Group g covers the flattened
(C-order) values ``[g*group_size, (g+1)*group_size)``; ``group_size`` equal to
the row length gives one step per row.

Parameters
----------
x : ndarray of float32 or float64
steps : ndarray of float32, shape (ceil(x.size / group_size),), finite, > 0
group_size : int
dead_zone : float in [0, 0.5), optional
symbol_dtype : {"int8", "int16"}
nthreads : int, 1..MAX_THREADS

Returns
-------
ndarray of int8 or int16, shape of x.

Raises
------
ValueError
    If a symbol does not fit in symbol_dtype (or x is not finite).
)doc",
        "x"_a, "steps"_a, py::kw_only(), "group_size"_a, "dead_zone"_a = 0.0,
        "symbol_dtype"_a = "int8", "nthreads"_a = 1);
  m.def("dequantize_uniform", &dequantize_uniform, R"doc(
Inverse of :func:`quantize_uniform`: ``q * step_g``, as float32 (default) or float64.
)doc",
        "q"_a, "steps"_a, py::kw_only(), "group_size"_a, "dtype"_a = "float32", "nthreads"_a = 1);
  m.def("quantize_fixed", &quantize_fixed, R"doc(
Fixed-rate round-to-nearest integer quantisation, packed to ``bits`` bits.

Symmetric (default): ``scale = fp16(absmax / (2**(bits-1) - 1))`` per group,
``q = clip(rint(x / scale), -qmax, qmax)`` stored as ``q + qmax``.
Asymmetric: ``m = fp16(min)``, ``scale = fp16((max - m) / (2**bits - 1))``,
``q = clip(rint((x - m) / scale), 0, 2**bits - 1)``.

Parameters
----------
x : ndarray of float32 or float64 (flattened in C order)
bits : int in 2..8
group_size : int, positive multiple of 8 (32, 64, 128 are the usual ones)
asymmetric : bool
nthreads : int, 1..MAX_THREADS

Returns
-------
(packed, scales, mins)
    uint8 bit stream (LSB first), float16 scales, float16 minimums or None.
)doc",
        "x"_a, "bits"_a, py::kw_only(), "group_size"_a, "asymmetric"_a = false, "nthreads"_a = 1);
  m.def("dequantize_fixed", &dequantize_fixed, R"doc(
Inverse of :func:`quantize_fixed`; returns ``count`` float32 values (flat).
Every size is checked against ``count`` before anything is read or
allocated: ``packed`` must hold exactly ``ceil(count * bits / 8)`` bytes and
``scales`` (and ``mins``) one entry per group; a count whose sizes do not fit
in 64 bits raises ValueError.
)doc",
        "packed"_a, "scales"_a, "mins"_a, py::kw_only(), "bits"_a, "group_size"_a, "count"_a,
        "nthreads"_a = 1);
  m.def("pack_bits", &pack_bits, R"doc(
Packs uint8 (bits 1..8) or uint16 (bits 1..16) values, LSB first; ValueError
if a value does not fit.
)doc",
        "values"_a, "bits"_a);
  m.def("unpack_bits", &unpack_bits, R"doc(
Unpacks ``count`` values of ``bits`` bits; the input must hold exactly
``ceil(count * bits / 8)`` bytes (checked before allocating; a count whose
packed size does not fit in 64 bits raises ValueError).
)doc",
        "data"_a, "bits"_a, "count"_a, "dtype"_a = "uint8");
}

}  // namespace qnpy

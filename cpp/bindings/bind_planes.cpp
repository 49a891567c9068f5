// Bindings of the byte planes of the lossless codec (include/quantonium/planes.hpp).
#include <array>

#include "bind_common.hpp"
#include "quantonium/planes.hpp"

namespace qnpy {

namespace {

qn::FloatLayout float_layout(const std::string& name, const char* fname) {
  if (name == "float32") return qn::FloatLayout::f32;
  if (name == "float16") return qn::FloatLayout::f16;
  if (name == "bfloat16") return qn::FloatLayout::bf16;
  throw py::value_error(std::string(fname) + ": layout must be 'float32', 'float16' or 'bfloat16', got '" + name + "'");
}

/// The bit patterns' array: uint32 for float32, uint16 for the 16-bit formats (TypeError otherwise).
py::array bit_patterns(const py::object& o, qn::FloatLayout f, const char* fname) {
  py::array a = as_array(o);
  const bool wide = f == qn::FloatLayout::f32;
  const py::dtype want = wide ? py::dtype::of<std::uint32_t>() : py::dtype::of<std::uint16_t>();
  if (!a.dtype().equal(want))
    throw py::type_error(std::string(fname) + ": the values must be given as " + (wide ? "uint32" : "uint16") +
                         " bit patterns for this layout (view them: a.view(np." + (wide ? "uint32" : "uint16") +
                         ")), got " + dtype_str(a));
  return a;
}

py::list byte_planes(const py::object& xo, const std::string& layout, int nthreads) {
  const char* fname = "byte_planes";
  check_nthreads(nthreads, fname);
  const qn::FloatLayout f = float_layout(layout, fname);
  py::array x = c_contig(bit_patterns(xo, f, fname));
  const qn::index_t n = x.size();
  const int np_ = qn::plane_layout(f).planes;
  std::vector<py::array_t<std::uint8_t>> planes;
  std::array<std::uint8_t*, 4> ptr{};
  for (int p = 0; p < np_; ++p) {
    planes.emplace_back(static_cast<py::ssize_t>(n));
    ptr[static_cast<std::size_t>(p)] = planes.back().mutable_data();
  }
  auto go = [&](auto tag) {
    using U = decltype(tag);
    const U* xp = static_cast<const U*>(x.data());
    py::gil_scoped_release release;
    qn::split_planes(xp, n, f, ptr.data(), nthreads);
  };
  if (f == qn::FloatLayout::f32)
    go(std::uint32_t{});
  else
    go(std::uint16_t{});
  py::list out;
  for (auto& p : planes) out.append(p);
  return out;
}

void or_byte_plane(const py::object& outo, const py::object& planeo, int index, const std::string& layout,
                   int nthreads) {
  const char* fname = "or_byte_plane";
  check_nthreads(nthreads, fname);
  const qn::FloatLayout f = float_layout(layout, fname);
  py::array out = bit_patterns(outo, f, fname);
  if (!out.writeable()) throw py::value_error(std::string(fname) + ": out must be writeable");
  if (!(out.flags() & py::array::c_style)) throw py::value_error(std::string(fname) + ": out must be C-contiguous");
  py::array plane = as_array(planeo);
  if (!plane.dtype().equal(py::dtype::of<std::uint8_t>()))
    throw py::type_error(std::string(fname) + ": plane must be uint8, got " + dtype_str(plane));
  if (plane.size() != out.size())
    throw py::value_error(std::string(fname) + ": plane holds " + std::to_string(plane.size()) + " bytes for " +
                          std::to_string(out.size()) + " values");
  const int np_ = qn::plane_layout(f).planes;
  if (index < 0 || index >= np_)
    throw py::value_error(std::string(fname) + ": index must be in 0.." + std::to_string(np_ - 1) + " for " + layout +
                          ", got " + std::to_string(index));
  plane = c_contig(plane);
  const qn::index_t n = out.size();
  const auto* pp = static_cast<const std::uint8_t*>(plane.data());
  auto go = [&](auto tag) {
    using U = decltype(tag);
    U* op = static_cast<U*>(out.mutable_data());
    py::gil_scoped_release release;
    qn::or_plane(op, pp, n, index, f, nthreads);
  };
  if (f == qn::FloatLayout::f32)
    go(std::uint32_t{});
  else
    go(std::uint16_t{});
}

py::array join_byte_planes(const py::sequence& seq, const std::string& layout, int nthreads) {
  const char* fname = "join_byte_planes";
  check_nthreads(nthreads, fname);
  const qn::FloatLayout f = float_layout(layout, fname);
  const int np_ = qn::plane_layout(f).planes;
  if (static_cast<int>(py::len(seq)) != np_)
    throw py::value_error(std::string(fname) + ": " + layout + " has " + std::to_string(np_) + " planes, got " +
                          std::to_string(py::len(seq)));
  std::vector<py::array> planes;
  std::array<const std::uint8_t*, 4> ptr{};
  py::ssize_t n = -1;
  for (int p = 0; p < np_; ++p) {
    py::array a = as_array(seq[static_cast<std::size_t>(p)]);
    if (!a.dtype().equal(py::dtype::of<std::uint8_t>()))
      throw py::type_error(std::string(fname) + ": planes must be uint8, plane " + std::to_string(p) + " is " +
                           dtype_str(a));
    if (n >= 0 && a.size() != n)
      throw py::value_error(std::string(fname) + ": planes hold " + std::to_string(n) + " and " +
                            std::to_string(a.size()) + " bytes");
    n = a.size();
    planes.push_back(c_contig(a));
    ptr[static_cast<std::size_t>(p)] = static_cast<const std::uint8_t*>(planes.back().data());
  }
  auto go = [&](auto tag) -> py::array {
    using U = decltype(tag);
    py::array_t<U> out(n);
    U* op = out.mutable_data();
    {
      py::gil_scoped_release release;
      qn::join_planes(ptr.data(), n, f, op, nthreads);
    }
    return out;
  };
  if (f == qn::FloatLayout::f32) return go(std::uint32_t{});
  return go(std::uint16_t{});
}

}  // namespace

void add_planes(py::module_& m) {
  using namespace pybind11::literals;
  m.def("byte_planes", &byte_planes, R"doc(
Splits floating-point bit patterns into byte planes (the lossless codec's split).

Parameters
----------
x : ndarray of uint32 (layout "float32") or uint16 ("float16", "bfloat16")
    The values' bit patterns, e.g. ``a.view(np.uint32)``; any shape, read in C order.
layout : {"float32", "float16", "bfloat16"}
nthreads : int

Returns
-------
list of 1-D uint8 ndarrays, one byte per value each
    Plane 0 is the exponent; planes 1.. are the bytes of sign+mantissa (the
    sign just above the mantissa's top bit), low byte first: 4 planes for
    float32, 3 for float16, 2 for bfloat16.
)doc",
        "x"_a, "layout"_a, py::kw_only(), "nthreads"_a = 1);
  m.def("or_byte_plane", &or_byte_plane, R"doc(
ORs one byte plane back into bit patterns, in place (the inverse of ``byte_planes``, plane by plane).

Parameters
----------
out : C-contiguous writeable ndarray of uint32 ("float32") or uint16
    Start from zeros; after every plane of ``byte_planes(x)`` has been ORed
    in, ``out`` equals ``x``.
plane : ndarray of uint8, ``out.size`` bytes
index : int
    The plane's number as ``byte_planes`` returns it (0 = exponent).
layout : {"float32", "float16", "bfloat16"}
nthreads : int
)doc",
        "out"_a, "plane"_a, "index"_a, "layout"_a, py::kw_only(), "nthreads"_a = 1);
  m.def("join_byte_planes", &join_byte_planes, R"doc(
Joins every byte plane back into bit patterns in one pass (the inverse of ``byte_planes``).

Parameters
----------
planes : sequence of uint8 ndarrays of one size
    All the planes of the layout, in ``byte_planes``' order.
layout : {"float32", "float16", "bfloat16"}
nthreads : int

Returns
-------
1-D ndarray of uint32 ("float32") or uint16
    Equal to ORing every plane with ``or_byte_plane`` into zeros.
)doc",
        "planes"_a, "layout"_a, py::kw_only(), "nthreads"_a = 1);
}

}  // namespace qnpy

// Shared validation and layout helpers for the Python bindings.
//
// Rules (ducc0's): dtypes are never cast silently (TypeError naming the
// accepted ones); shapes, axes and parameters are validated with the GIL held
// (ValueError); the computation runs with the GIL released.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <complex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "quantonium/checked.hpp"
#include "quantonium/layout.hpp"

namespace qnpy {

namespace py = pybind11;

/// nthreads must be in 1..qn::kMaxThreads (ValueError otherwise).
inline void check_nthreads(int nthreads, const char* fname) {
  if (nthreads < 1 || nthreads > qn::kMaxThreads)
    throw py::value_error(std::string(fname) + ": nthreads must be in 1.." +
                          std::to_string(qn::kMaxThreads) + ", got " + std::to_string(nthreads));
}

/// Runs f() and turns a std::invalid_argument it throws (a size that
/// overflows, a value out of range: see quantonium/checked.hpp) into a
/// ValueError whose message starts with fname.
template <class F>
auto named(const char* fname, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string(fname) + ": " + e.what());
  }
}

enum class DKind { f32, f64, c64, c128, other };

inline DKind dkind(const py::array& a) {
  const py::dtype dt = a.dtype();
  if (dt.equal(py::dtype::of<float>())) return DKind::f32;
  if (dt.equal(py::dtype::of<double>())) return DKind::f64;
  if (dt.equal(py::dtype::of<std::complex<float>>())) return DKind::c64;
  if (dt.equal(py::dtype::of<std::complex<double>>())) return DKind::c128;
  return DKind::other;
}

inline bool is_real(DKind k) { return k == DKind::f32 || k == DKind::f64; }
inline bool is_single(DKind k) { return k == DKind::f32 || k == DKind::c64; }

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

/// Converts anything array-like to an ndarray without changing its dtype.
/// (Lists and other array-likes go through numpy.asarray, whose dtype is then
/// checked like any other.)
inline py::array as_array(const py::object& obj) {
  if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
  py::object np = py::module_::import("numpy");
  return py::reinterpret_borrow<py::array>(np.attr("asarray")(obj));
}

inline int normalize_axis(int axis, py::ssize_t ndim, const char* fname) {
  if (ndim == 0)
    throw py::value_error(std::string(fname) + ": input must have at least one dimension");
  if (axis < -ndim || axis >= ndim)
    throw py::value_error(std::string(fname) + ": axis " + std::to_string(axis) +
                          " is out of bounds for an array of dimension " + std::to_string(ndim));
  return axis < 0 ? static_cast<int>(axis + ndim) : axis;
}

/// A strided (outer, n, inner) view of an array along `axis`, strides in bytes.
struct Collapsed {
  qn::Batch batch;
  py::ssize_t s_outer = 0, s_elem = 0, s_inner = 0;
  bool ok = true;  ///< false: the layout does not collapse (copy it first)
};

inline Collapsed collapse(const py::array& a, int axis) {
  Collapsed c;
  const py::ssize_t nd = a.ndim();
  auto group = [&](py::ssize_t lo, py::ssize_t hi, py::ssize_t& count, py::ssize_t& stride) {
    count = 1;
    stride = 0;
    py::ssize_t prev = -1;  // index of the previous dimension of size > 1
    for (py::ssize_t d = hi - 1; d >= lo; --d) {
      const py::ssize_t len = a.shape(d);
      // numpy guarantees that the product of all dimensions fits; checked anyway
      count = qn::checked_mul(count, len, "the number of rows");
      if (len == 1) continue;
      if (prev < 0) {
        stride = a.strides(d);
      } else if (a.strides(d) != a.strides(prev) * a.shape(prev)) {
        c.ok = false;
      }
      prev = d;
    }
  };
  py::ssize_t outer, inner;
  group(0, axis, outer, c.s_outer);
  group(axis + 1, nd, inner, c.s_inner);
  c.batch = qn::Batch{outer, a.shape(axis), inner};
  c.s_elem = a.strides(axis);
  // Outer rows are addressed as o * s_outer: the outer group's stride must be
  // the stride of its innermost dimension of size > 1 (guaranteed above).
  return c;
}

/// Strides in units of the scalar T; false if a stride is not a multiple.
template <class T>
inline bool scalar_strides(const Collapsed& c, qn::index_t& so, qn::index_t& se, qn::index_t& si) {
  constexpr auto s = static_cast<py::ssize_t>(sizeof(T));
  if (c.s_outer % s || c.s_elem % s || c.s_inner % s) return false;
  so = c.s_outer / s;
  se = c.s_elem / s;
  si = c.s_inner / s;
  return true;
}

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

inline std::string shape_str(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

/// Validates `out` (or allocates it) for a result of dtype `dt` and `shape`.
inline py::array prepare_out(const py::object& out, const py::dtype& dt,
                             const std::vector<py::ssize_t>& shape, const char* fname) {
  if (out.is_none()) return py::array(dt, shape);
  if (!py::isinstance<py::array>(out))
    throw py::type_error(std::string(fname) + ": out must be a numpy.ndarray");
  auto o = py::reinterpret_borrow<py::array>(out);
  if (!o.dtype().equal(dt))
    throw py::type_error(std::string(fname) + ": out has dtype " + dtype_str(o) + ", expected " +
                         py::str(dt).cast<std::string>());
  const auto oshape = shape_of(o);
  if (oshape != shape)
    throw py::value_error(std::string(fname) + ": out has shape " + shape_str(oshape) +
                          ", expected " + shape_str(shape));
  if (!o.writeable()) throw py::value_error(std::string(fname) + ": out is read-only");
  return o;
}

/// Rejects an `out` that overlaps `in` unless it is exactly the same array
/// layout (an in-place call, which the row engine supports).
inline void check_overlap(const py::array& in, const py::array& out, bool same_itemsize,
                          const char* fname) {
  py::object np = py::module_::import("numpy");
  if (!np.attr("may_share_memory")(in, out).cast<bool>()) return;
  bool same = same_itemsize && in.data() == out.data() && in.ndim() == out.ndim();
  for (py::ssize_t d = 0; same && d < in.ndim(); ++d) same = in.strides(d) == out.strides(d);
  if (!same)
    throw py::value_error(std::string(fname) +
                          ": out overlaps the input; pass a separate array, or the input "
                          "itself for an in-place transform of the same dtype");
}

/// True if the array's data are aligned for its dtype (numpy's ALIGNED flag).
/// A buffer viewed at an odd offset (numpy.frombuffer(b, offset=1)) is not;
/// reading its elements through typed pointers would be undefined behaviour.
inline bool is_aligned(const py::array& a) {
  return (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
}

/// A C-contiguous, aligned copy (same dtype) of `a`: a fresh allocation, so
/// aligned whatever `a` was.
inline py::array contiguous_copy(const py::array& a) {
  py::object np = py::module_::import("numpy");
  return py::reinterpret_borrow<py::array>(np.attr("array")(a, py::arg("copy") = true, py::arg("order") = "C"));
}

/// `a` itself when it is C-contiguous and aligned, else such a copy.
inline py::array c_contig(const py::array& a) {
  return ((a.flags() & py::array::c_style) && is_aligned(a)) ? a : contiguous_copy(a);
}

}  // namespace qnpy

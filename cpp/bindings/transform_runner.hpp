// Generic drivers shared by the transform bindings: validate the call, make
// the output, describe both layouts to the core, release the GIL, run.
#pragma once

#include "bind_common.hpp"
#include "quantonium/layout.hpp"

namespace qnpy {

/// Complex-output transform (Phi-RFT, canonical RFT). `run(T{}, batch, in,
/// out)` calls the core with the GIL released.
template <class Run>
py::array complex_transform(const char* fname, const py::object& xo, int axis, int nthreads,
                            const py::object& out_obj, Run&& run) {
  py::array x = as_array(xo);
  const DKind k = dkind(x);
  if (k == DKind::other)
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(x) +
                         "; expected one of float32, float64, complex64, complex128");
  const int ax = normalize_axis(axis, x.ndim(), fname);
  if (x.shape(ax) == 0)
    throw py::value_error(std::string(fname) + ": the transform axis has length 0 (n must be >= 1)");
  if (x.shape(ax) > qn::kMaxTransformLength)
    throw py::value_error(std::string(fname) + ": the transform axis has length " +
                          std::to_string(x.shape(ax)) + ", more than the " +
                          std::to_string(qn::kMaxTransformLength) + " FFTW accepts");
  check_nthreads(nthreads, fname);
  const bool single = is_single(k);
  const py::dtype odt = single ? py::dtype::of<std::complex<float>>()
                               : py::dtype::of<std::complex<double>>();
  py::array out = prepare_out(out_obj, odt, shape_of(x), fname);
  if (!out_obj.is_none()) check_overlap(x, out, x.itemsize() == out.itemsize(), fname);

  auto go = [&](auto tag) {
    using T = decltype(tag);
    Collapsed ci = collapse(x, ax);
    qn::index_t so = 0, se = 0, si = 0;
    if (!ci.ok || !scalar_strides<T>(ci, so, se, si) || !is_aligned(x)) {
      x = contiguous_copy(x);
      ci = collapse(x, ax);
      scalar_strides<T>(ci, so, se, si);
    }
    if (!is_aligned(out))
      throw py::value_error(std::string(fname) + ": out is not aligned for its dtype");
    const Collapsed co = collapse(out, ax);
    qn::index_t oo = 0, oe = 0, oi = 0;
    if (!co.ok || !scalar_strides<T>(co, oo, oe, oi))
      throw py::value_error(std::string(fname) +
                            ": out's memory layout cannot be addressed as (outer, n, inner) "
                            "rows; pass a C-contiguous out");
    qn::RowsIn<T> in{static_cast<const T*>(x.data()), so, si, se, 1, is_real(k)};
    qn::RowsOut<T> o{static_cast<T*>(out.mutable_data()), oo, oi, oe, 1};
    py::gil_scoped_release release;
    run(T{}, ci.batch, in, o);
  };
  if (single)
    go(float{});
  else
    go(double{});
  return out;
}

/// Real-in, real-out transform along an axis (the real-orthogonal Phi-RFT).
/// `run(T{}, batch, in, so, se, si, out, oo, oe, oi)` calls the core.
template <class Run>
py::array real_transform(const char* fname, const py::object& xo, int axis, int nthreads,
                         const py::object& out_obj, Run&& run) {
  py::array x = as_array(xo);
  const DKind k = dkind(x);
  if (!is_real(k))
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(x) +
                         "; expected one of float32, float64 (real rows; use rft_forward or "
                         "rft_inverse for complex data)");
  const int ax = normalize_axis(axis, x.ndim(), fname);
  if (x.shape(ax) == 0)
    throw py::value_error(std::string(fname) + ": the transform axis has length 0 (n must be >= 1)");
  if (x.shape(ax) > qn::kMaxTransformLength)
    throw py::value_error(std::string(fname) + ": the transform axis has length " +
                          std::to_string(x.shape(ax)) + ", more than the " +
                          std::to_string(qn::kMaxTransformLength) + " FFTW accepts");
  check_nthreads(nthreads, fname);
  py::array out = prepare_out(out_obj, x.dtype(), shape_of(x), fname);
  if (!out_obj.is_none()) check_overlap(x, out, true, fname);

  auto go = [&](auto tag) {
    using T = decltype(tag);
    Collapsed ci = collapse(x, ax);
    qn::index_t so = 0, se = 0, si = 0;
    if (!ci.ok || !scalar_strides<T>(ci, so, se, si) || !is_aligned(x)) {
      x = contiguous_copy(x);
      ci = collapse(x, ax);
      scalar_strides<T>(ci, so, se, si);
    }
    if (!is_aligned(out))
      throw py::value_error(std::string(fname) + ": out is not aligned for its dtype");
    const Collapsed co = collapse(out, ax);
    qn::index_t oo = 0, oe = 0, oi = 0;
    if (!co.ok || !scalar_strides<T>(co, oo, oe, oi))
      throw py::value_error(std::string(fname) +
                            ": out's memory layout cannot be addressed as (outer, n, inner) "
                            "rows; pass a C-contiguous out");
    const T* ip = static_cast<const T*>(x.data());
    T* op = static_cast<T*>(out.mutable_data());
    py::gil_scoped_release release;
    run(T{}, ci.batch, ip, so, se, si, op, oo, oe, oi);
  };
  if (k == DKind::f32)
    go(float{});
  else
    go(double{});
  return out;
}

}  // namespace qnpy

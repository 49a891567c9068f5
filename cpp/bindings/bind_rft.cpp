// Bindings of the fast Phi-RFT and the real-orthogonal Phi-RFT.
#include "quantonium/rft.hpp"
#include "transform_runner.hpp"

namespace qnpy {

namespace {

const char* const kForwardDoc = R"doc(
Fast Phi-RFT (forward) along one axis.

    y = exp(i*theta) * FFT_ortho(x),
    theta_k = 2*pi*beta*frac(k/phi) + pi*sigma*k**2/n

The transform is unitary. Its magnitudes equal those of the unitary DFT,
``abs(rft_forward(x)) == abs(numpy.fft.fft(x, norm="ortho"))``: the Phi-RFT has
the DFT's energy compaction, and keeping its top-k coefficients keeps the same
k as an FFT would.

Parameters
----------
x : array_like of float32, float64, complex64 or complex128
    Input, of any shape with at least one dimension. Other dtypes raise
    TypeError (nothing is cast silently). Any memory layout is accepted;
    layouts that cannot be addressed as (outer, n, inner) rows are copied.
beta, sigma : float, optional
    Phase parameters (default 1.0). Must be finite.
axis : int, optional
    Axis along which to transform (default -1). Its length n must be >= 1
    and at most 2**31 - 1 (FFTW's limit); any such n works (FFTW handles
    non-powers of two).
nthreads : int, optional
    Threads to use (default 1; 1..MAX_THREADS, else ValueError): rows are
    shared among threads, a single long row uses FFTW's threads. Results are
    identical for a given nthreads.
out : numpy.ndarray, optional
    Where to write the result: complex64 for float32/complex64 input,
    complex128 otherwise, same shape as x. May be x itself (in place) when x
    has the output dtype.

Returns
-------
numpy.ndarray
    complex64 for float32/complex64 input, complex128 for float64/complex128.

Notes
-----
NaN and inf are not checked: a non-finite element makes every element of its
row non-finite, as for an FFT. The GIL is released while computing.
)doc";

const char* const kInverseDoc = R"doc(
Inverse fast Phi-RFT along one axis: ``x = IFFT_ortho(exp(-i*theta) * y)``.

``rft_inverse(rft_forward(x))`` returns x (as complex) to rounding.

Parameters
----------
y : array_like of float32, float64, complex64 or complex128
    Coefficients. Other dtypes raise TypeError.
beta, sigma : float, optional
    Must be the values used for the forward transform (default 1.0).
axis, nthreads, out :
    As for :func:`rft_forward`.

Returns
-------
numpy.ndarray
    complex64 for float32/complex64 input, complex128 otherwise.

Notes
-----
NaN and inf propagate to the whole row. The GIL is released while computing.
)doc";

const char* const kRealForwardDoc = R"doc(
Real-orthogonal Phi-RFT (forward): real rows in, real coefficients out.

Each row x of length n along ``axis`` is packed as z_j = x[2j] + i*x[2j+1]
(j < n//2), transformed with the Phi-RFT of length n//2, and written back
interleaved: ``c[2j] = Re(y_j)``, ``c[2j+1] = Im(y_j)``. This layout is stable
(the .qnt format relies on it). For odd n the last element is passed through
unchanged. The map is orthogonal: norms and quantisation errors are preserved.

Parameters
----------
x : array_like of float32 or float64
    Real input; complex or other dtypes raise TypeError.
beta, sigma, axis, nthreads :
    As for :func:`rft_forward`.
out : numpy.ndarray, optional
    Same dtype and shape as x; may be x itself.

Returns
-------
numpy.ndarray
    Real coefficients, same dtype and shape as x.

Notes
-----
NaN and inf spread over the row's complex half-length transform.
)doc";

const char* const kRealInverseDoc = R"doc(
Inverse of :func:`rft_real_forward`: interleaved real coefficients in, real
rows out.

Parameters
----------
c : array_like of float32 or float64
    Coefficients as produced by :func:`rft_real_forward`.
beta, sigma, axis, nthreads, out :
    As for :func:`rft_real_forward`.

Returns
-------
numpy.ndarray
    Same dtype and shape as c.
)doc";

const char* const kRawDoc = R"doc(
Raw, unnormalised FFTW c2c transform of C-contiguous rows along the last axis.

One of the floors of bench/rft_vs_fftw.py (our own raw FFTW call): the same
plan cache and planner effort as the RFT, no phases, no scaling. With
``blocked=False`` one out-of-place FFTW plan covers the whole batch (FFTW's own
threads); with ``blocked=True`` the rows go through FFTW in the same
cache-sized chunks, shared among threads, as the Phi-RFT. Not part of the
stable API.
)doc";

template <qn::Direction D>
py::array rft(const py::object& x, double beta, double sigma, int axis, int nthreads,
              const py::object& out) {
  const char* name = D == qn::Direction::forward ? "rft_forward" : "rft_inverse";
  return complex_transform(name, x, axis, nthreads, out,
                           [&](auto tag, const qn::Batch& b, const auto& in, const auto& o) {
                             using T = decltype(tag);
                             qn::phi_rft<T>(D, b, in, o, beta, sigma, nthreads);
                           });
}

template <qn::Direction D>
py::array rft_real(const py::object& x, double beta, double sigma, int axis, int nthreads,
                   const py::object& out) {
  const char* name = D == qn::Direction::forward ? "rft_real_forward" : "rft_real_inverse";
  return real_transform(name, x, axis, nthreads, out,
                        [&](auto tag, const qn::Batch& b, const auto* ip, qn::index_t so,
                            qn::index_t se, qn::index_t si, auto* op, qn::index_t oo,
                            qn::index_t oe, qn::index_t oi) {
                          using T = decltype(tag);
                          qn::real_rft<T>(D, b, ip, so, se, si, op, oo, oe, oi, beta, sigma,
                                          nthreads);
                        });
}

py::array raw_fftw(const py::object& xo, bool inverse, int nthreads, bool blocked,
                   const py::object& out_obj) {
  const char* fname = "_fftw_c2c";
  py::array x = as_array(xo);
  const DKind k = dkind(x);
  if (k != DKind::c64 && k != DKind::c128)
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(x) +
                         "; expected complex64 or complex128");
  if (x.ndim() == 0 || x.shape(x.ndim() - 1) == 0)
    throw py::value_error(std::string(fname) + ": need at least one dimension of length >= 1");
  if (!(x.flags() & py::array::c_style) || !is_aligned(x))
    throw py::value_error(std::string(fname) + ": input must be C-contiguous and aligned");
  check_nthreads(nthreads, fname);
  py::array out = prepare_out(out_obj, x.dtype(), shape_of(x), fname);
  if (!(out.flags() & py::array::c_style) || !is_aligned(out))
    throw py::value_error(std::string(fname) + ": out must be C-contiguous and aligned");
  if (!out_obj.is_none()) check_overlap(x, out, true, fname);
  const qn::index_t n = x.shape(x.ndim() - 1);
  const qn::index_t rows = x.size() / n;
  const auto dir = inverse ? qn::Direction::inverse : qn::Direction::forward;
  auto go = [&](auto tag) {
    using T = decltype(tag);
    const auto* ip = static_cast<const std::complex<T>*>(x.data());
    auto* op = static_cast<std::complex<T>*>(out.mutable_data());
    py::gil_scoped_release release;
    qn::fftw_c2c_raw<T>(dir, rows, n, ip, op, nthreads, blocked);
  };
  if (k == DKind::c64)
    go(float{});
  else
    go(double{});
  return out;
}

}  // namespace

void add_rft(py::module_& m) {
  using namespace pybind11::literals;
  m.def("rft_forward", &rft<qn::Direction::forward>, kForwardDoc, "x"_a, py::kw_only(),
        "beta"_a = 1.0, "sigma"_a = 1.0, "axis"_a = -1, "nthreads"_a = 1, "out"_a = py::none());
  m.def("rft_inverse", &rft<qn::Direction::inverse>, kInverseDoc, "y"_a, py::kw_only(),
        "beta"_a = 1.0, "sigma"_a = 1.0, "axis"_a = -1, "nthreads"_a = 1, "out"_a = py::none());
  m.def("rft_real_forward", &rft_real<qn::Direction::forward>, kRealForwardDoc, "x"_a,
        py::kw_only(), "beta"_a = 1.0, "sigma"_a = 1.0, "axis"_a = -1, "nthreads"_a = 1,
        "out"_a = py::none());
  m.def("rft_real_inverse", &rft_real<qn::Direction::inverse>, kRealInverseDoc, "c"_a,
        py::kw_only(), "beta"_a = 1.0, "sigma"_a = 1.0, "axis"_a = -1, "nthreads"_a = 1,
        "out"_a = py::none());
  m.def("_fftw_c2c", &raw_fftw, kRawDoc, "x"_a, py::kw_only(), "inverse"_a = false,
        "nthreads"_a = 1, "blocked"_a = false, "out"_a = py::none());
}

}  // namespace qnpy

// Bindings of the canonical RFT.
#include "quantonium/rft.hpp"
#include "transform_runner.hpp"

namespace qnpy {

namespace {

const char* const kForwardDoc = R"doc(
Canonical RFT (forward): ``X = Phi_tilde^H x`` along one axis.

Phi_tilde is the Gram-normalised golden-ratio exponential basis
(``Phi[j, k] = exp(2*pi*i*frac((k+1)*phi)*j) / sqrt(n)``,
``Phi_tilde = Phi (Phi^H Phi)^(-1/2)``). It is built once per n in double
precision (O(n^3)), checked to be unitary to 1e-10, cached, and applied as a
dense complex matrix product (O(n^2) per row). Unlike the Phi-RFT, its
magnitudes differ from the DFT's.

Parameters
----------
x : array_like of float32, float64, complex64 or complex128
    Input; other dtypes raise TypeError.
axis : int, optional
    Transform axis (default -1). Its length n must satisfy
    1 <= n <= CANONICAL_MAX_N; larger n, or an n whose basis is not unitary to
    1e-10, raises ValueError.
nthreads : int, optional
    Threads sharing the rows (default 1; 1..MAX_THREADS).
out : numpy.ndarray, optional
    complex64 for float32/complex64 input, complex128 otherwise.

Returns
-------
numpy.ndarray
    The coefficients (complex).

Notes
-----
NaN and inf spread to every element of their row. The GIL is released while
computing, including while a basis is built for the first time (about 11 s at
n = 1024); other threads that need a basis meanwhile wait for it.
)doc";

const char* const kInverseDoc = R"doc(
Inverse canonical RFT: ``x = Phi_tilde X`` along one axis.

Parameters
----------
X : array_like of float32, float64, complex64 or complex128
    Coefficients.
axis, nthreads, out :
    As for :func:`canonical_rft_forward`.

Returns
-------
numpy.ndarray
    complex64 for single-precision input, complex128 otherwise.
)doc";

template <qn::Direction D>
py::array canonical(const py::object& x, int axis, int nthreads, const py::object& out) {
  const char* name = D == qn::Direction::forward ? "canonical_rft_forward" : "canonical_rft_inverse";
  return complex_transform(name, x, axis, nthreads, out,
                           [&](auto tag, const qn::Batch& b, const auto& in, const auto& o) {
                             using T = decltype(tag);
                             qn::canonical_rft<T>(D, b, in, o, nthreads);
                           });
}

py::array basis(qn::index_t n) {
  std::vector<std::complex<double>> data;
  {
    py::gil_scoped_release release;
    data = qn::canonical_basis(n);
  }
  py::array_t<std::complex<double>, py::array::f_style> a({n, n});
  std::copy(data.begin(), data.end(), a.mutable_data());
  return a;
}

}  // namespace

void add_canonical(py::module_& m) {
  using namespace pybind11::literals;
  m.def("canonical_rft_forward", &canonical<qn::Direction::forward>, kForwardDoc, "x"_a,
        py::kw_only(), "axis"_a = -1, "nthreads"_a = 1, "out"_a = py::none());
  m.def("canonical_rft_inverse", &canonical<qn::Direction::inverse>, kInverseDoc, "X"_a,
        py::kw_only(), "axis"_a = -1, "nthreads"_a = 1, "out"_a = py::none());
  m.def("canonical_basis", &basis, R"doc(
The canonical RFT basis Phi_tilde for length n, as an (n, n) complex128 array
(columns are basis vectors). Raises ValueError for refused sizes.
)doc",
        "n"_a);
  m.def(
      "canonical_unitarity_error",
      [](qn::index_t n) {
        py::gil_scoped_release release;
        return qn::canonical_unitarity_error(n);
      },
      R"doc(Measured max |Phi_tilde^H Phi_tilde - I| of the basis for length n.)doc", "n"_a);
  m.attr("CANONICAL_MAX_N") = qn::kCanonicalMaxN;
}

}  // namespace qnpy

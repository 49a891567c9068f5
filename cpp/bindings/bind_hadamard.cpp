// Bindings of the Walsh-Hadamard transform (quantonium/hadamard.hpp).
#include <stdexcept>

#include "quantonium/hadamard.hpp"
#include "transform_runner.hpp"

namespace qnpy {

namespace {

const char* const kForwardDoc = R"doc(
Orthonormal Walsh-Hadamard transform (forward) of real rows along one axis.

For a row length n = m * 2**k, ``y = (H_m kron H_p) x / sqrt(n)`` with
p = 2**k, H_p Sylvester's Hadamard matrix and H_m the matrix of order m given
by :func:`hadamard_matrix` (m = 1 when n is a power of two). With the row seen
as an (m, p) matrix X, ``Y = H_m X H_p / sqrt(n)``. Used with random signs as
the randomised Hadamard transform of QuIP# / QuaRot (codec ``wht-fixed``).

Parameters
----------
x : array_like of float32 or float64
    Real input of any shape with at least one dimension; other dtypes raise
    TypeError (nothing is cast silently).
axis : int, optional
    Axis along which to transform (default -1). Its length n must factor as
    :func:`hadamard_factor` accepts, else ValueError.
nthreads : int, optional
    Threads to use (default 1); rows are shared among threads. Results do not
    depend on nthreads.
out : numpy.ndarray, optional
    Same dtype and shape as x; may be x itself.

Returns
-------
numpy.ndarray
    Same dtype and shape as x.

Notes
-----
Cost O(n log p + n m) per row, additions and subtractions only, accumulated
in the input's precision. NaN and inf spread over the row. The GIL is
released while computing.
)doc";

const char* const kInverseDoc = R"doc(
Inverse of :func:`wht_forward`: ``x = (H_m kron H_p)^T y / sqrt(n)``.

Parameters
----------
y : array_like of float32 or float64
    Coefficients as produced by :func:`wht_forward`.
axis, nthreads, out :
    As for :func:`wht_forward`.

Returns
-------
numpy.ndarray
    Same dtype and shape as y.
)doc";

template <qn::Direction D>
py::array wht(const py::object& x, int axis, int nthreads, const py::object& out) {
  const char* name = D == qn::Direction::forward ? "wht_forward" : "wht_inverse";
  py::array a = as_array(x);
  if (is_real(dkind(a)) && a.ndim() > 0) {  // the length is checked with the GIL held
    const int ax = normalize_axis(axis, a.ndim(), name);
    if (a.shape(ax) > 0) {
      try {
        qn::hadamard_factor(a.shape(ax));
      } catch (const std::domain_error& e) {
        throw py::value_error(std::string(name) + ": " + e.what());
      }
    }
  }
  return real_transform(name, a, axis, nthreads, out,
                        [&](auto tag, const qn::Batch& b, const auto* ip, qn::index_t so,
                            qn::index_t se, qn::index_t si, auto* op, qn::index_t oo,
                            qn::index_t oe, qn::index_t oi) {
                          using T = decltype(tag);
                          qn::wht<T>(D, b, ip, so, se, si, op, oo, oe, oi, nthreads);
                        });
}

py::tuple factor(qn::index_t n) {
  try {
    const auto [m, p] = qn::hadamard_factor(n);
    return py::make_tuple(m, p);
  } catch (const std::domain_error& e) {
    throw py::value_error(e.what());
  }
}

py::array matrix(qn::index_t m) {
  const std::vector<std::int8_t>* h = nullptr;
  try {
    h = &qn::hadamard_matrix(m);
  } catch (const std::domain_error& e) {
    throw py::value_error(e.what());
  }
  py::array_t<std::int8_t> a({m, m});
  std::copy(h->begin(), h->end(), a.mutable_data());
  return a;
}

}  // namespace

void add_hadamard(py::module_& m) {
  using namespace pybind11::literals;
  m.def("wht_forward", &wht<qn::Direction::forward>, kForwardDoc, "x"_a, py::kw_only(),
        "axis"_a = -1, "nthreads"_a = 1, "out"_a = py::none());
  m.def("wht_inverse", &wht<qn::Direction::inverse>, kInverseDoc, "y"_a, py::kw_only(),
        "axis"_a = -1, "nthreads"_a = 1, "out"_a = py::none());
  m.def("hadamard_factor", &factor, R"doc(
(m, p) with n = m * p, p the largest power of two such that a Hadamard matrix
of order m is built here (:func:`hadamard_matrix`): the factorisation
:func:`wht_forward` uses. Raises ValueError when there is none.

Parameters
----------
n : int
    Row length, >= 1.

Returns
-------
tuple of int
    (m, p).
)doc",
        "n"_a);
  m.def("hadamard_matrix", &matrix, R"doc(
The Hadamard matrix of order m used by :func:`wht_forward` (int8, entries +-1,
``H @ H.T == m * I``).

Orders: 1 and 2 (Sylvester), q + 1 for a prime q = 3 mod 4 (Paley I) and
2 (q + 1) for a prime q = 1 mod 4 (Paley II), up to HADAMARD_MAX_M. The
construction is part of the ``wht-fixed`` payload format; it equals
``quantonium.reference.hadamard_matrix``.

Parameters
----------
m : int
    The order.

Returns
-------
numpy.ndarray
    (m, m) int8. Raises ValueError for an order not built here.
)doc",
        "m"_a);
  m.attr("HADAMARD_MAX_M") = qn::kHadamardMaxM;
}

}  // namespace qnpy

// Bindings of the fidelity sums (include/quantonium/stats.hpp).
#include "bind_common.hpp"
#include "quantonium/stats.hpp"

namespace qnpy {

namespace {

py::tuple energy_sums(const py::object& xo, const py::object& yo, int nthreads) {
  const char* fname = "energy_sums";
  check_nthreads(nthreads, fname);
  py::array x = as_array(xo);
  const DKind k = dkind(x);
  if (!is_real(k))
    throw py::type_error(std::string(fname) + ": unsupported dtype " + dtype_str(x) +
                         "; expected one of float32, float64");
  x = c_contig(x);
  py::array y;
  if (!yo.is_none()) {
    y = as_array(yo);
    if (!y.dtype().equal(x.dtype()))
      throw py::type_error(std::string(fname) + ": y must have x's dtype (" + dtype_str(x) + "), got " +
                           dtype_str(y));
    if (y.size() != x.size())
      throw py::value_error(std::string(fname) + ": x and y hold " + std::to_string(x.size()) + " and " +
                            std::to_string(y.size()) + " values");
    y = c_contig(y);
  }
  const qn::index_t n = x.size();
  qn::EnergySums s;
  auto go = [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.data());
    const T* yp = yo.is_none() ? nullptr : static_cast<const T*>(y.data());
    py::gil_scoped_release release;
    s = qn::energy_sums(xp, yp, n, nthreads);
  };
  if (k == DKind::f32)
    go(float{});
  else
    go(double{});
  return py::make_tuple(s.signal, s.error);
}

}  // namespace

void add_stats(py::module_& m) {
  using namespace pybind11::literals;
  m.def("energy_sums", &energy_sums, R"doc(
Signal and error energy of a tensor against its reconstruction, in float64.

Parameters
----------
x : ndarray of float32 or float64 (any shape; flattened in C order)
y : ndarray of x's dtype and size, or None
nthreads : int

Returns
-------
(sum x**2, sum (x - y)**2)
    The second is 0.0 when ``y`` is None. Accumulated in float64 in fixed
    blocks of 65536 values added in order: identical for any ``nthreads``.
)doc",
        "x"_a, "y"_a = py::none(), py::kw_only(), "nthreads"_a = 1);
}

}  // namespace qnpy

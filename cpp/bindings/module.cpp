// The quantonium_native._core extension module: one PYBIND11_MODULE, one
// add_<area> function per binding file.
#include <pybind11/pybind11.h>

#ifndef QN_VERSION
#define QN_VERSION "unknown"
#endif

namespace qnpy {
void add_rft(pybind11::module_& m);
void add_canonical(pybind11::module_& m);
void add_info(pybind11::module_& m);
void add_quant(pybind11::module_& m);
void add_entropy(pybind11::module_& m);
void add_hadamard(pybind11::module_& m);
void add_stats(pybind11::module_& m);
void add_planes(pybind11::module_& m);
}  // namespace qnpy

PYBIND11_MODULE(_core, m) {
  m.doc() = "Native RFT kernels of Quantonium (C++, FFTW, SIMD). See quantonium_native.";
  m.attr("__version__") = QN_VERSION;
  qnpy::add_rft(m);
  qnpy::add_canonical(m);
  qnpy::add_info(m);
  qnpy::add_quant(m);
  qnpy::add_entropy(m);
  qnpy::add_hadamard(m);
  qnpy::add_stats(m);
  qnpy::add_planes(m);
}

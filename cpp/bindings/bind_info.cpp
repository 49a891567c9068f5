// Build information and cache control.
#include <pybind11/stl.h>

#include "bind_common.hpp"
#include "quantonium/checked.hpp"
#include "quantonium/build_info.hpp"
#include "quantonium/rft.hpp"

namespace qnpy {

void add_info(py::module_& m) {
  using namespace pybind11::literals;
  m.def(
      "build_info",
      [] {
        const qn::BuildInfo i = qn::build_info();
        py::dict d;
        d["version"] = i.version;
        d["fftw_version"] = i.fftw_version;
        d["compiler"] = i.compiler;
        d["architecture"] = i.architecture;
        d["simd_compiled"] = i.simd_compiled;
        d["simd_selected"] = i.simd_selected;
        d["rans_kernels"] = i.rans_kernels;
        d["planner_effort"] = i.planner_effort;
        return d;
      },
      R"doc(
How the native core was built and what it runs with.

Returns
-------
dict
    ``version``, ``fftw_version`` (FFTW's own version string), ``compiler``,
    ``architecture``, ``simd_compiled`` (SIMD paths in this binary),
    ``simd_selected`` (the one chosen for this CPU at run time; the environment
    variable QUANTONIUM_SIMD can force a lower one), ``planner_effort`` and
    ``rans_kernels`` (the rANS chunk kernels in use: "avx512f" or "scalar").
)doc");
  m.def(
      "set_planner_effort", [](const std::string& e) { qn::set_planner_effort(e.c_str()); },
      R"doc(
Sets FFTW's planner effort for plans made from now on: "estimate", "measure"
(default), "patient" or "exhaustive". Existing plans are kept; call
clear_caches() to re-plan.
)doc",
      "effort"_a);
  m.def(
      "clear_caches",
      [] {
        py::gil_scoped_release release;
        qn::clear_caches();
      },
      R"doc(Drops every cached FFTW plan, phase table and canonical basis.)doc");
  // The largest nthreads any function accepts (ValueError above it).
  m.attr("MAX_THREADS") = qn::kMaxThreads;
}

}  // namespace qnpy

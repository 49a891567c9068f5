// What the native core was built with and what it selected at run time.
#pragma once

#include <string>
#include <vector>

namespace qn {

struct BuildInfo {
  std::string version;               ///< package version
  std::string fftw_version;          ///< FFTW's own version string (double precision library)
  std::string compiler;              ///< compiler id and version
  std::string architecture;          ///< x86_64, aarch64, ...
  std::vector<std::string> simd_compiled;  ///< SIMD paths compiled into this binary
  std::string simd_selected;         ///< the path chosen for this CPU (or forced)
  std::string planner_effort;        ///< current FFTW planner effort
  std::string rans_kernels;          ///< rANS chunk kernels in use ("avx512f" or "scalar")
};

BuildInfo build_info();

}  // namespace qn

#include "quantonium/build_info.hpp"

#include <fftw3.h>

#include "quantonium/rft.hpp"
#include "rans_internal.hpp"
#include "simd_kernels.hpp"

#ifndef QN_VERSION
#define QN_VERSION "unknown"
#endif

namespace qn {

BuildInfo build_info() {
  BuildInfo info;
  info.version = QN_VERSION;
  info.fftw_version = fftw_version;
#if defined(__clang__)
  info.compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  info.compiler = "gcc " __VERSION__;
#else
  info.compiler = "unknown";
#endif
#if defined(__x86_64__) || defined(_M_X64)
  info.architecture = "x86_64";
#elif defined(__aarch64__)
  info.architecture = "aarch64";
#else
  info.architecture = "other";
#endif
  info.simd_compiled = simd::compiled_paths();
  info.simd_selected = simd::selected_path();
  info.rans_kernels = rans_detail::rans_kernel_path();
  info.planner_effort = planner_effort();
  return info;
}

}  // namespace qn

// FFTW plans: precision traits, a process-wide plan cache and the planner lock.
//
// FFTW's planner is not thread safe (plan creation and destruction must be
// serialised), while executing an existing plan with the new-array interface
// is. Every planner call therefore goes through planner_mutex(); execution
// never takes it.
#pragma once

#include <fftw3.h>

#include <complex>
#include <memory>
#include <mutex>

#include "quantonium/layout.hpp"

namespace qn::detail {

template <class T>
struct Fftw;

template <>
struct Fftw<double> {
  using plan_t = fftw_plan;
  using cpx_t = fftw_complex;
  static plan_t plan_many(int n, int howmany, cpx_t* in, cpx_t* out, int sign, unsigned flags) {
    return fftw_plan_many_dft(1, &n, howmany, in, nullptr, 1, n, out, nullptr, 1, n, sign, flags);
  }
  static void execute(plan_t p, cpx_t* in, cpx_t* out) { fftw_execute_dft(p, in, out); }
  static void destroy(plan_t p) { fftw_destroy_plan(p); }
  static void* malloc(std::size_t bytes) { return fftw_malloc(bytes); }
  static void free(void* p) { fftw_free(p); }
  static void plan_with_nthreads(int n) { fftw_plan_with_nthreads(n); }
  static int init_threads() { return fftw_init_threads(); }
  static void cleanup() { fftw_cleanup(); }
};

template <>
struct Fftw<float> {
  using plan_t = fftwf_plan;
  using cpx_t = fftwf_complex;
  static plan_t plan_many(int n, int howmany, cpx_t* in, cpx_t* out, int sign, unsigned flags) {
    return fftwf_plan_many_dft(1, &n, howmany, in, nullptr, 1, n, out, nullptr, 1, n, sign, flags);
  }
  static void execute(plan_t p, cpx_t* in, cpx_t* out) { fftwf_execute_dft(p, in, out); }
  static void destroy(plan_t p) { fftwf_destroy_plan(p); }
  static void* malloc(std::size_t bytes) { return fftwf_malloc(bytes); }
  static void free(void* p) { fftwf_free(p); }
  static void plan_with_nthreads(int n) { fftwf_plan_with_nthreads(n); }
  static int init_threads() { return fftwf_init_threads(); }
  static void cleanup() { fftwf_cleanup(); }
};

/// The one lock around every FFTW planner call.
std::mutex& planner_mutex();

/// An FFTW plan for `howmany` contiguous rows of length n (row distance n).
template <class T>
class Plan {
 public:
  using plan_t = typename Fftw<T>::plan_t;
  explicit Plan(plan_t p) : p_(p) {}
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan();
  /// Thread safe; in/out must have the alignment the plan was made for.
  void execute(std::complex<T>* in, std::complex<T>* out) const {
    Fftw<T>::execute(p_, reinterpret_cast<typename Fftw<T>::cpx_t*>(in),
                     reinterpret_cast<typename Fftw<T>::cpx_t*>(out));
  }

 private:
  plan_t p_;
};

/// A cached plan. `align_in`/`align_out` are the byte offsets of the arrays
/// from FFTW's SIMD alignment (0 for fftw_malloc'd buffers): a plan may only be
/// executed on arrays with the same offsets.
template <class T>
std::shared_ptr<const Plan<T>> get_plan(index_t n, index_t howmany, int sign, bool inplace,
                                        int nthreads, int align_in = 0, int align_out = 0);

/// Byte offset of p from FFTW's SIMD alignment.
int alignment_offset(const void* p);

/// Drop every cached plan (plans in use stay alive until their last user ends).
void clear_plan_cache();

unsigned planner_flags();
void set_planner_flags(unsigned flags);

/// fftw_malloc'd buffer of complex<T>, zero-filled.
template <class T>
struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t count);
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { Fftw<T>::free(ptr); }
  std::complex<T>* ptr = nullptr;
};

}  // namespace qn::detail

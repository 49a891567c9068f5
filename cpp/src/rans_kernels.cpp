// Chunk kernels of the format-2 rANS coder (layout: quantonium/entropy.hpp).
//
// Scalar kernels (every machine, ARM64 included; W = 1..32 states,
// compile-time unrolled), and for W = 32 AVX2 kernels (four vectors of 8
// states) and AVX-512 kernels (two vectors of 16), chosen at run time from the
// SIMD path selected in simd_kernels.cpp (QUANTONIUM_SIMD=sse2 forces the
// scalar ones, =avx2 the AVX2 ones). Every kernel produces the same bytes and
// symbols: the SIMD encoders divide through float32 with an exact integer
// correction, the scalar one through a float64 reciprocal that is exact.
//
// Word order: within a group of W symbols the decoder renormalises state 0,
// then 1, ..., W-1, reading words front to back. The encoder, which runs
// backwards and writes backwards, therefore handles state W-1 first; the
// AVX-512 encoder stores the upper vector's (states 16..31) words, compressed,
// before the lower vector's, which gives the same order.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>

#include "parallel.hpp"
#include "rans_common.hpp"
#include "rans_internal.hpp"
#include "simd_kernels.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define QN_RANS_X86 1
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
// _mm512_undefined_* helpers when inlined (a known false positive).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

namespace qn::rans_detail {
namespace {

inline std::uint32_t load16(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8;
}
inline std::uint32_t load32(const std::uint8_t* p) {
  return load16(p) | load16(p + 2) << 16;
}
inline void store32(std::uint8_t* p, std::uint32_t v) {
  for (int k = 0; k < 4; ++k) p[k] = static_cast<std::uint8_t>(v >> (8 * k));
}

template <class S>
inline std::uint32_t index_of(S s, std::int32_t lo) {
  return static_cast<std::uint32_t>(static_cast<std::int32_t>(s) - lo);
}

// ---------------------------------------------------------------------------
// Scalar encoder: groups backwards, states W-1 .. 0 within a group.
// ---------------------------------------------------------------------------
template <class S, int W>
std::uint8_t* encode_scalar(const S* sym, index_t m, const EncTable& t, std::uint8_t* end,
                            std::uint32_t* states_in_out, index_t groups_done_by_simd) {
  std::uint32_t x[W];
  for (int j = 0; j < W; ++j) x[j] = states_in_out ? states_in_out[j] : kL;
  std::uint8_t* p = end;
  const std::uint32_t* info = t.info.data();
  const int sb = t.scale_bits;
  const std::int32_t lo = t.lo;
  const double* rcp = t.rcp.data();
  auto step = [&](int j, index_t i) {
    const std::uint32_t k = index_of(sym[i], lo);
    const std::uint32_t e = info[k];
    const std::uint32_t f = e & 0xFFFF, c = e >> 16;
    std::uint32_t xj = x[j];
    // branch-free renormalisation: the word is always written below p (a
    // slot that later words or the states overwrite when it is not emitted)
    const bool r = xj >= (f << (32 - sb));
    p[-2] = static_cast<std::uint8_t>(xj);
    p[-1] = static_cast<std::uint8_t>(xj >> 8);
    p -= r ? 2 : 0;
    xj = r ? xj >> 16 : xj;
    // q = floor(x / f) = floor(x * fl(1/f) + 2^-19), exact: x < 2^32, the
    // product's error is below 2^-20 (x / f < 2^31 for f >= 2; f = 1 is exact)
    // and a non-integer x / f is at least 2^-16 below the next integer
    const std::uint32_t q = static_cast<std::uint32_t>(static_cast<double>(xj) * rcp[k] + 0x1p-19);
    x[j] = (q << sb) + (xj - q * f) + c;
  };
  const index_t G = m / W, tail = m % W;
  (void)groups_done_by_simd;
  for (index_t j = tail; j-- > 0;) step(static_cast<int>(j), G * W + j);
  for (index_t g = G; g-- > 0;)
    for (int j = W; j-- > 0;) step(j, g * W + j);
  p -= 4 * W;
  for (int j = 0; j < W; ++j) store32(p + 4 * j, x[j]);
  return p;
}

// ---------------------------------------------------------------------------
// Scalar decoder. Groups with enough bytes left for a worst case (one word
// per state) take a branch-free renormalisation; the last ones are checked.
// ---------------------------------------------------------------------------
template <bool Small>
struct Entry {
  std::uint32_t idx, freq, bias;
};

template <bool Small>
inline Entry<Small> entry(const DecTable& t, std::uint32_t slot) {
  if constexpr (Small) {
    const std::uint32_t e = t.packed[slot];
    return {e & 0xFF, (e >> 8) & 0xFFF, e >> 20};
  } else {
    const std::uint64_t e = t.wide[slot];
    return {static_cast<std::uint32_t>(e & 0xFFFF), static_cast<std::uint32_t>((e >> 16) & 0xFFFF),
            static_cast<std::uint32_t>(e >> 32)};
  }
}

template <class S, int W, bool Small>
void decode_groups_scalar(std::uint32_t* x_io, const std::uint8_t*& p_io, const std::uint8_t* end,
                          index_t g0, index_t m, const DecTable& t, S* out) {
  // states and the read pointer in locals: stores of byte symbols may alias
  // anything whose address escaped, which would send them through memory
  std::uint32_t x[W];
  for (int j = 0; j < W; ++j) x[j] = x_io[j];
  const std::uint8_t* p = p_io;
  const int sb = t.scale_bits;
  const std::uint32_t mask = (1u << sb) - 1;
  const std::int32_t lo = t.lo;
  const index_t G = m / W;
  index_t g = g0;
  for (; g < G && end - p >= 2 * W; ++g) {  // unchecked: at most W words are read
    S* o = out + g * W;
    // symbols first (independent states), then the renormalisations in order
    for (int j = 0; j < W; ++j) {
      const Entry<Small> e = entry<Small>(t, x[j] & mask);
      o[j] = static_cast<S>(lo + static_cast<std::int32_t>(e.idx));
      x[j] = e.freq * (x[j] >> sb) + e.bias;
    }
    for (int j = 0; j < W; ++j) {
      const std::uint32_t w = load16(p);
      const bool r = x[j] < kL;
      x[j] = r ? (x[j] << 16) | w : x[j];
      p += r ? 2 : 0;
    }
  }
  auto checked = [&](int j, index_t i) {
    std::uint32_t xj = x[j];
    const Entry<Small> e = entry<Small>(t, xj & mask);
    out[i] = static_cast<S>(lo + static_cast<std::int32_t>(e.idx));
    xj = e.freq * (xj >> sb) + e.bias;
    if (xj < kL) {
      if (end - p < 2) bad("truncated chunk");
      xj = (xj << 16) | load16(p);
      p += 2;
    }
    x[j] = xj;
  };
  for (; g < G; ++g)
    for (int j = 0; j < W; ++j) checked(j, g * W + j);
  for (index_t j = 0; j < m % W; ++j) checked(static_cast<int>(j), G * W + j);
  for (int j = 0; j < W; ++j) x_io[j] = x[j];
  p_io = p;
}

#if defined(QN_RANS_X86)
#define QN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,popcnt")))

// Loads 16 symbols as 32-bit symbol indexes (value - lo, modulo the type's width).
template <class S>
QN_AVX512 inline __m512i load_index16(const S* s, __m512i lo, __m512i wmask) {
  __m512i v;
  if constexpr (sizeof(S) == 1)
    v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  else
    v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
  return _mm512_and_si512(_mm512_sub_epi32(v, lo), wmask);
}

// Symbol info for 16 indexes: from NT registers of 16 entries (a tree of
// two-register permutes and blends: on Zen 4 far cheaper than a gather), or,
// NT = 0, a gather.
template <int NT>
QN_AVX512 inline __m512i lookup_info(__m512i idx, const std::uint32_t* info, const __m512i* tab) {
  if constexpr (NT == 0) {
    (void)tab;
    return _mm512_i32gather_epi32(idx, info, 4);
  } else {
    (void)info;
    __m512i r[NT / 2];
    for (int k = 0; k < NT / 2; ++k) r[k] = _mm512_permutex2var_epi32(tab[2 * k], idx, tab[2 * k + 1]);
    int n = NT / 2;
    for (int bit = 5; n > 1; ++bit, n /= 2) {
      const __mmask16 hi = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(1 << bit));
      for (int k = 0; k < n / 2; ++k) r[k] = _mm512_mask_blend_epi32(hi, r[2 * k], r[2 * k + 1]);
    }
    return r[0];
  }
}

QN_AVX512 inline void encode_vec(__m512i& x, __m512i e, __m128i sh_max, __m128i sh_scale,
                                 std::uint8_t*& p) {
  const __m512i f = _mm512_and_si512(e, _mm512_set1_epi32(0xFFFF));
  const __m512i c = _mm512_srli_epi32(e, 16);
  const __m512i xmax = _mm512_sll_epi32(f, sh_max);
  const __mmask16 r = _mm512_cmpge_epu32_mask(x, xmax);
  const int cnt = __builtin_popcount(static_cast<unsigned>(r));
  const __m256i words = _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(r, x));
  p -= 2 * cnt;
  _mm256_mask_storeu_epi16(p, static_cast<__mmask16>((1u << cnt) - 1), words);
  x = _mm512_mask_srli_epi32(x, r, x, 16);
  // q = x / f through a float32 reciprocal (|error| < 1 for x < f * 2^(32 - S), S >= 10),
  // then one exact correction each way.
  const __m512 ff = _mm512_cvtepu32_ps(f);
  __m512 rc = _mm512_rcp14_ps(ff);  // 14 bits; one Newton step gives ~28
  rc = _mm512_mul_ps(rc, _mm512_fnmadd_ps(ff, rc, _mm512_set1_ps(2.0f)));
  __m512i q = _mm512_cvttps_epu32(_mm512_mul_ps(_mm512_cvtepu32_ps(x), rc));
  __m512i rem = _mm512_sub_epi32(x, _mm512_mullo_epi32(q, f));
  const __m512i one = _mm512_set1_epi32(1);
  const __mmask16 neg = _mm512_cmplt_epi32_mask(rem, _mm512_setzero_si512());
  q = _mm512_mask_sub_epi32(q, neg, q, one);
  rem = _mm512_mask_add_epi32(rem, neg, rem, f);
  const __mmask16 big = _mm512_cmpge_epi32_mask(rem, f);
  q = _mm512_mask_add_epi32(q, big, q, one);
  rem = _mm512_mask_sub_epi32(rem, big, rem, f);
  x = _mm512_add_epi32(_mm512_add_epi32(_mm512_sll_epi32(q, sh_scale), rem), c);
}

template <class S, int NT>
QN_AVX512 std::uint8_t* encode32_avx512(const S* sym, index_t m, const EncTable& t,
                                        std::uint8_t* end) {
  constexpr int W = 32;
  const index_t G = m / W, tail = m % W;
  std::uint32_t x[W];
  for (int j = 0; j < W; ++j) x[j] = kL;
  std::uint8_t* p = end;
  const std::uint32_t* info = t.info.data();
  const int sb = t.scale_bits;
  const std::int32_t lo = t.lo;
  // the partial group first (it is last in the stream), scalar
  for (index_t j = tail; j-- > 0;) {
    const std::uint32_t e = info[index_of(sym[G * W + j], lo)];
    const std::uint32_t f = e & 0xFFFF, c = e >> 16;
    std::uint32_t xj = x[j];
    if (xj >= (f << (32 - sb))) {
      p -= 2;
      p[0] = static_cast<std::uint8_t>(xj);
      p[1] = static_cast<std::uint8_t>(xj >> 8);
      xj >>= 16;
    }
    x[j] = ((xj / f) << sb) + (xj % f) + c;
  }
  __m512i xa = _mm512_loadu_si512(x), xb = _mm512_loadu_si512(x + 16);
  __m512i tab[NT > 0 ? NT : 1];
  if constexpr (NT > 0) {
    std::uint32_t small[16 * NT] = {};
    std::copy(t.info.begin(), t.info.end(), small);
    for (int k = 0; k < NT; ++k) tab[k] = _mm512_loadu_si512(small + 16 * k);
  }
  const __m512i vlo = _mm512_set1_epi32(lo);
  const __m512i wmask = _mm512_set1_epi32(sizeof(S) == 1 ? 0xFF : 0xFFFF);
  const __m128i sh_max = _mm_cvtsi32_si128(32 - sb), sh_scale = _mm_cvtsi32_si128(sb);
  for (index_t g = G; g-- > 0;) {
    const S* s = sym + g * W;
    const __m512i eb = lookup_info<NT>(load_index16(s + 16, vlo, wmask), info, tab);
    const __m512i ea = lookup_info<NT>(load_index16(s, vlo, wmask), info, tab);
    encode_vec(xb, eb, sh_max, sh_scale, p);
    encode_vec(xa, ea, sh_max, sh_scale, p);
  }
  _mm512_storeu_si512(x, xa);
  _mm512_storeu_si512(x + 16, xb);
  p -= 4 * W;
  for (int j = 0; j < W; ++j) store32(p + 4 * j, x[j]);
  return p;
}

template <class S>
QN_AVX512 inline void store_symbols(S* out, __m512i sym) {
  if constexpr (sizeof(S) == 1)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(sym));
  else
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_cvtepi32_epi16(sym));
}

template <class S, bool Small>
QN_AVX512 inline void decode_vec(__m512i& x, const DecTable& t, __m512i vlo, __m128i sh,
                                 __m512i mask, const std::uint8_t*& p, S* out) {
  const __m512i slot = _mm512_and_si512(x, mask);
  __m512i sym, fr, bias;
  if constexpr (Small) {
    const __m512i e = _mm512_i32gather_epi32(slot, t.packed.data(), 4);
    sym = _mm512_and_si512(e, _mm512_set1_epi32(0xFF));
    fr = _mm512_and_si512(_mm512_srli_epi32(e, 8), _mm512_set1_epi32(0xFFF));
    bias = _mm512_srli_epi32(e, 20);
  } else {  // two 8-lane 64-bit gathers
    const long long* base = reinterpret_cast<const long long*>(t.wide.data());
    const __m512i e0 = _mm512_i32gather_epi64(_mm512_castsi512_si256(slot), base, 8);
    const __m512i e1 = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(slot, 1), base, 8);
    const __m512i lo32 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(e0)),
                                            _mm512_cvtepi64_epi32(e1), 1);
    const __m512i hi32 =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64(e0, 32))),
                           _mm512_cvtepi64_epi32(_mm512_srli_epi64(e1, 32)), 1);
    sym = _mm512_and_si512(lo32, _mm512_set1_epi32(0xFFFF));
    fr = _mm512_srli_epi32(lo32, 16);
    bias = hi32;
  }
  store_symbols(out, _mm512_add_epi32(sym, vlo));
  x = _mm512_add_epi32(_mm512_mullo_epi32(fr, _mm512_srl_epi32(x, sh)), bias);
  const __mmask16 r = _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(static_cast<int>(kL)));
  const __m512i w = _mm512_maskz_expand_epi32(
      r, _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
  x = _mm512_mask_or_epi32(x, r, _mm512_slli_epi32(x, 16), w);
  p += 2 * __builtin_popcount(static_cast<unsigned>(r));
}

/// Full groups while at least 64 bytes remain; returns the number done.
template <class S, bool Small>
QN_AVX512 index_t decode32_avx512(std::uint32_t* x, const std::uint8_t*& p,
                                  const std::uint8_t* end, index_t G, const DecTable& t, S* out) {
  __m512i xa = _mm512_loadu_si512(x), xb = _mm512_loadu_si512(x + 16);
  const __m512i vlo = _mm512_set1_epi32(t.lo);
  const __m128i sh = _mm_cvtsi32_si128(t.scale_bits);
  const __m512i mask = _mm512_set1_epi32(static_cast<int>((1u << t.scale_bits) - 1));
  index_t g = 0;
  for (; g < G && end - p >= 64; ++g) {
    decode_vec<S, Small>(xa, t, vlo, sh, mask, p, out + g * 32);
    decode_vec<S, Small>(xb, t, vlo, sh, mask, p, out + g * 32 + 16);
  }
  _mm512_storeu_si512(x, xa);
  _mm512_storeu_si512(x + 16, xb);
  return g;
}

// ---------------------------------------------------------------------------
// AVX2 (four vectors of 8 states). No compress/expand instructions: lane
// permutations come from two 256-entry tables indexed by the renormalisation
// mask; unsigned compares through max / shifts. Same bytes as the others.
// ---------------------------------------------------------------------------
#define QN_AVX2 __attribute__((target("avx2,fma,popcnt")))

struct Avx2Tables {
  alignas(32) std::uint32_t expand[256][8];  // decode: lane i <- word popcount(m & ((1 << i) - 1))
  alignas(32) std::uint32_t to_top[256][8];  // encode: the set lanes, in order, into the top lanes
  Avx2Tables() {
    for (int m = 0; m < 256; ++m) {
      int k = 0;
      for (int i = 0; i < 8; ++i) {
        expand[m][i] = static_cast<std::uint32_t>(k);
        if (m >> i & 1) ++k;
      }
      const int cnt = k;
      for (int i = 0; i < 8; ++i) to_top[m][i] = 0;
      int pos = 8 - cnt;
      for (int i = 0; i < 8; ++i)
        if (m >> i & 1) to_top[m][pos++] = static_cast<std::uint32_t>(i);
    }
  }
};

const Avx2Tables& avx2_tables() {
  static const Avx2Tables t;
  return t;
}

template <class S>
QN_AVX2 inline __m256i load_index8(const S* s, __m256i lo, __m256i wmask) {
  __m256i v;
  if constexpr (sizeof(S) == 1)
    v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)));
  else
    v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  return _mm256_and_si256(_mm256_sub_epi32(v, lo), wmask);
}

QN_AVX2 inline void encode_vec8(__m256i& x, __m256i idx, const std::uint32_t* info, __m128i sh_max,
                                __m128i sh_scale, const Avx2Tables& lut, std::uint8_t*& p) {
  const __m256i e = _mm256_i32gather_epi32(reinterpret_cast<const int*>(info), idx, 4);
  const __m256i f = _mm256_and_si256(e, _mm256_set1_epi32(0xFFFF));
  const __m256i c = _mm256_srli_epi32(e, 16);
  const __m256i xmax = _mm256_sll_epi32(f, sh_max);
  const __m256i r = _mm256_cmpeq_epi32(_mm256_max_epu32(x, xmax), x);  // x >= xmax
  const int m = _mm256_movemask_ps(_mm256_castsi256_ps(r));
  const int cnt = __builtin_popcount(static_cast<unsigned>(m));
  // emitted words in lane order, moved to the top lanes, low 16 bits packed:
  // a 16-byte store ending at p (the garbage below is overwritten later)
  const __m256i moved = _mm256_permutevar8x32_epi32(
      x, _mm256_load_si256(reinterpret_cast<const __m256i*>(lut.to_top[m])));
  const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(moved, pick), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p - 16), _mm256_castsi256_si128(packed));
  p -= 2 * cnt;
  x = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), r);
  // q = x / f through float32: x < 2^32 converted as 2 * (x >> 1) (|error| < 1
  // after the division for S >= 10), then one exact correction each way
  const __m256 xf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(x, 1)), _mm256_set1_ps(2.0f));
  __m256i q = _mm256_cvttps_epi32(_mm256_div_ps(xf, _mm256_cvtepi32_ps(f)));
  __m256i rem = _mm256_sub_epi32(x, _mm256_mullo_epi32(q, f));
  const __m256i neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), rem);
  q = _mm256_add_epi32(q, neg);
  rem = _mm256_add_epi32(rem, _mm256_and_si256(neg, f));
  const __m256i big = _mm256_cmpgt_epi32(rem, _mm256_sub_epi32(f, _mm256_set1_epi32(1)));
  q = _mm256_sub_epi32(q, big);
  rem = _mm256_sub_epi32(rem, _mm256_and_si256(big, f));
  x = _mm256_add_epi32(_mm256_add_epi32(_mm256_sll_epi32(q, sh_scale), rem), c);
}

template <class S>
QN_AVX2 std::uint8_t* encode32_avx2(const S* sym, index_t m, const EncTable& t, std::uint8_t* end) {
  constexpr int W = 32;
  const index_t G = m / W, tail = m % W;
  std::uint32_t x[W];
  for (int j = 0; j < W; ++j) x[j] = kL;
  std::uint8_t* p = end;
  const std::uint32_t* info = t.info.data();
  const int sb = t.scale_bits;
  const std::int32_t lo = t.lo;
  for (index_t j = tail; j-- > 0;) {  // the partial group first, scalar
    const std::uint32_t e = info[index_of(sym[G * W + j], lo)];
    const std::uint32_t f = e & 0xFFFF, c = e >> 16;
    std::uint32_t xj = x[j];
    if (xj >= (f << (32 - sb))) {
      p -= 2;
      p[0] = static_cast<std::uint8_t>(xj);
      p[1] = static_cast<std::uint8_t>(xj >> 8);
      xj >>= 16;
    }
    x[j] = ((xj / f) << sb) + (xj % f) + c;
  }
  const Avx2Tables& lut = avx2_tables();
  __m256i v[4];
  for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8 * k));
  const __m256i vlo = _mm256_set1_epi32(lo);
  const __m256i wmask = _mm256_set1_epi32(sizeof(S) == 1 ? 0xFF : 0xFFFF);
  const __m128i sh_max = _mm_cvtsi32_si128(32 - sb), sh_scale = _mm_cvtsi32_si128(sb);
  for (index_t g = G; g-- > 0;) {
    const S* s = sym + g * W;
    for (int k = 4; k-- > 0;) encode_vec8(v[k], load_index8(s + 8 * k, vlo, wmask), info, sh_max, sh_scale, lut, p);
  }
  for (int k = 0; k < 4; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8 * k), v[k]);
  p -= 4 * W;
  for (int j = 0; j < W; ++j) store32(p + 4 * j, x[j]);
  return p;
}

template <class S, bool Small>
QN_AVX2 inline void decode_vec8(__m256i& x, const DecTable& t, __m256i vlo, __m128i sh, __m256i mask,
                                const Avx2Tables& lut, const std::uint8_t*& p, S* out) {
  const __m256i slot = _mm256_and_si256(x, mask);
  __m256i sym, fr, bias;
  if constexpr (Small) {
    const __m256i e = _mm256_i32gather_epi32(reinterpret_cast<const int*>(t.packed.data()), slot, 4);
    sym = _mm256_and_si256(e, _mm256_set1_epi32(0xFF));
    fr = _mm256_and_si256(_mm256_srli_epi32(e, 8), _mm256_set1_epi32(0xFFF));
    bias = _mm256_srli_epi32(e, 20);
  } else {
    const long long* base = reinterpret_cast<const long long*>(t.wide.data());
    const __m256i e0 = _mm256_i32gather_epi64(base, _mm256_castsi256_si128(slot), 8);
    const __m256i e1 = _mm256_i32gather_epi64(base, _mm256_extracti128_si256(slot, 1), 8);
    // low and high 32-bit halves of the 8 entries, in lane order
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i a = _mm256_permutevar8x32_epi32(e0, idx), b = _mm256_permutevar8x32_epi32(e1, idx);
    const __m256i lo32 = _mm256_permute2x128_si256(a, b, 0x20), hi32 = _mm256_permute2x128_si256(a, b, 0x31);
    sym = _mm256_and_si256(lo32, _mm256_set1_epi32(0xFFFF));
    fr = _mm256_srli_epi32(lo32, 16);
    bias = hi32;
  }
  const __m256i v = _mm256_add_epi32(sym, vlo);
  if constexpr (sizeof(S) == 1) {
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, pick), _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(b));
  } else {
    const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i b = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, pick), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(b));
  }
  x = _mm256_add_epi32(_mm256_mullo_epi32(fr, _mm256_srl_epi32(x, sh)), bias);
  const __m256i r = _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), _mm256_setzero_si256());  // x < 2^16
  const int m = _mm256_movemask_ps(_mm256_castsi256_ps(r));
  const __m256i w = _mm256_permutevar8x32_epi32(
      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
      _mm256_load_si256(reinterpret_cast<const __m256i*>(lut.expand[m])));
  x = _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), w), r);
  p += 2 * __builtin_popcount(static_cast<unsigned>(m));
}

template <class S, bool Small>
QN_AVX2 index_t decode32_avx2(std::uint32_t* x, const std::uint8_t*& p, const std::uint8_t* end, index_t G,
                              const DecTable& t, S* out) {
  const Avx2Tables& lut = avx2_tables();
  __m256i v[4];
  for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8 * k));
  const __m256i vlo = _mm256_set1_epi32(t.lo);
  const __m128i sh = _mm_cvtsi32_si128(t.scale_bits);
  const __m256i mask = _mm256_set1_epi32(static_cast<int>((1u << t.scale_bits) - 1));
  index_t g = 0;
  for (; g < G && end - p >= 64; ++g)
    for (int k = 0; k < 4; ++k) decode_vec8<S, Small>(v[k], t, vlo, sh, mask, lut, p, out + g * 32 + 8 * k);
  for (int k = 0; k < 4; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8 * k), v[k]);
  return g;
}
#endif  // QN_RANS_X86

enum class Path { scalar, avx2, avx512 };

Path path() {
  static const Path p = [] {
#if defined(QN_RANS_X86)
    const std::string sel = simd::selected_path();
    if (sel == "avx512f") return Path::avx512;
    if (sel == "avx2") return Path::avx2;
#endif
    return Path::scalar;
  }();
  return p;
}

template <class S, int W>
void decode_chunk_w(const std::uint8_t* body, index_t len, index_t m, const DecTable& t, S* out) {
  if (len < 4 * W) bad("chunk shorter than its states");
  if ((len - 4 * W) % 2) bad("odd number of payload bytes in a chunk (truncated, or trailing bytes)");
  std::uint32_t x[W];
  for (int j = 0; j < W; ++j) {
    x[j] = load32(body + 4 * j);
    if (x[j] < kL) bad("initial state below 2^16");
  }
  const std::uint8_t* p = body + 4 * W;
  const std::uint8_t* end = body + len;
  index_t g0 = 0;
#if defined(QN_RANS_X86)
  if constexpr (W == 32) {
    if (path() == Path::avx512)
      g0 = t.small ? decode32_avx512<S, true>(x, p, end, m / W, t, out)
                   : decode32_avx512<S, false>(x, p, end, m / W, t, out);
    else if (path() == Path::avx2)
      g0 = t.small ? decode32_avx2<S, true>(x, p, end, m / W, t, out)
                   : decode32_avx2<S, false>(x, p, end, m / W, t, out);
  }
#endif
  if (t.small)
    decode_groups_scalar<S, W, true>(x, p, end, g0, m, t, out);
  else
    decode_groups_scalar<S, W, false>(x, p, end, g0, m, t, out);
  if (p != end) bad("trailing bytes in a chunk");
  for (int j = 0; j < W; ++j)
    if (x[j] != kL) bad("final state mismatch (corrupted payload)");
}

}  // namespace

template <class S>
std::uint8_t* encode_chunk(const S* sym, index_t m, int ways, const EncTable& t, std::uint8_t* end) {
  switch (ways) {
    case 1: return encode_scalar<S, 1>(sym, m, t, end, nullptr, 0);
    case 2: return encode_scalar<S, 2>(sym, m, t, end, nullptr, 0);
    case 4: return encode_scalar<S, 4>(sym, m, t, end, nullptr, 0);
    case 8: return encode_scalar<S, 8>(sym, m, t, end, nullptr, 0);
    case 16: return encode_scalar<S, 16>(sym, m, t, end, nullptr, 0);
    case 32:
#if defined(QN_RANS_X86)
      if (path() == Path::avx512)
      {
        const std::size_t span = t.info.size();
        if (span <= 32) return encode32_avx512<S, 2>(sym, m, t, end);
        if (span <= 64) return encode32_avx512<S, 4>(sym, m, t, end);
        if (span <= 128) return encode32_avx512<S, 8>(sym, m, t, end);
        if (span <= 256) return encode32_avx512<S, 16>(sym, m, t, end);
        return encode32_avx512<S, 0>(sym, m, t, end);
      }
      if (path() == Path::avx2) return encode32_avx2<S>(sym, m, t, end);
#endif
      return encode_scalar<S, 32>(sym, m, t, end, nullptr, 0);
    default: throw std::invalid_argument("rANS: ways must be 1, 2, 4, 8, 16 or 32");
  }
}

template <class S>
void decode_chunk(const std::uint8_t* body, index_t len, index_t m, int ways, const DecTable& t,
                  S* out) {
  switch (ways) {
    case 1: return decode_chunk_w<S, 1>(body, len, m, t, out);
    case 2: return decode_chunk_w<S, 2>(body, len, m, t, out);
    case 4: return decode_chunk_w<S, 4>(body, len, m, t, out);
    case 8: return decode_chunk_w<S, 8>(body, len, m, t, out);
    case 16: return decode_chunk_w<S, 16>(body, len, m, t, out);
    case 32: return decode_chunk_w<S, 32>(body, len, m, t, out);
    default: bad("bad number of ways");
  }
}

template <class S>
std::vector<std::uint64_t> histogram(const S* sym, index_t n, int nthreads) {
  constexpr std::size_t bins = std::size_t(1) << (8 * sizeof(S));
  constexpr std::int32_t smin = std::numeric_limits<S>::min();
  std::vector<std::uint64_t> total(bins, 0);
  std::mutex mu;
  detail::parallel_for(n, nthreads, index_t(1) << 16, [&](index_t b, index_t e) {
    std::vector<std::uint64_t> acc(bins, 0);
    if constexpr (sizeof(S) == 1) {
      // four sub-histograms: repeated symbols do not wait on one counter
      std::vector<std::uint32_t> h(4 * bins);
      for (index_t b0 = b; b0 < e; b0 += index_t(1) << 30) {
        const index_t e0 = std::min(e, b0 + (index_t(1) << 30));
        std::fill(h.begin(), h.end(), 0u);
        index_t i = b0;
        // 8 bytes per 64-bit load; a byte's index is its bits (XOR 0x80 for
        // int8, whose histogram is indexed from -128)
        constexpr std::uint64_t flip = std::is_signed_v<S> ? 0x8080808080808080ull : 0;
        std::uint32_t* h0 = h.data();
        std::uint32_t* h1 = h0 + bins;
        std::uint32_t* h2 = h1 + bins;
        std::uint32_t* h3 = h2 + bins;
        for (; i + 8 <= e0; i += 8) {
          std::uint64_t v;
          std::memcpy(&v, sym + i, 8);
          v ^= flip;
          ++h0[v & 0xFF];
          ++h1[(v >> 8) & 0xFF];
          ++h2[(v >> 16) & 0xFF];
          ++h3[(v >> 24) & 0xFF];
          ++h0[(v >> 32) & 0xFF];
          ++h1[(v >> 40) & 0xFF];
          ++h2[(v >> 48) & 0xFF];
          ++h3[v >> 56];
        }
        for (; i < e0; ++i) ++h[static_cast<std::size_t>(sym[i] - smin)];
        for (std::size_t k = 0; k < bins; ++k)
          acc[k] += std::uint64_t(h[k]) + h[bins + k] + h[2 * bins + k] + h[3 * bins + k];
      }
    } else {
      for (index_t i = b; i < e; ++i) ++acc[static_cast<std::size_t>(sym[i] - smin)];
    }
    std::lock_guard<std::mutex> lock(mu);
    for (std::size_t k = 0; k < bins; ++k) total[k] += acc[k];
  });
  return total;
}

const char* rans_kernel_path() {
  switch (path()) {
    case Path::avx512: return "avx512f";
    case Path::avx2: return "avx2";
    default: return "scalar";
  }
}

#define QN_RANS_INST(S)                                                                        \
  template std::uint8_t* encode_chunk<S>(const S*, index_t, int, const EncTable&, std::uint8_t*); \
  template void decode_chunk<S>(const std::uint8_t*, index_t, index_t, int, const DecTable&, S*); \
  template std::vector<std::uint64_t> histogram<S>(const S*, index_t, int);
QN_RANS_INST(std::int8_t)
QN_RANS_INST(std::int16_t)
QN_RANS_INST(std::uint8_t)

}  // namespace qn::rans_detail

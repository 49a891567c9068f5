// Order-0 rANS entropy coder for symbol streams (issue 3; fast format: issue 9).
//
// Two stream formats; the decoder tells them apart by the first two bytes.
//
// Format 2 (written by default): interleaved rANS, 32-bit states, 16-bit
// renormalisation, independent chunks that share one table.
//   0x80 0x00                magic. A format-1 stream starts with its count as
//                            a canonical (shortest) varint, which never begins
//                            0x80 0x00, so the two cannot be confused.
//   u8 2                     format number
//   count                    varint: number of symbols
//   if count > 0:
//     zigzag(min_symbol)     varint (lo)
//     u8 shape               (S - 10) | log2_ways << 3: scale bits S in 10..16
//                            (M = 2^S; frequencies sum to M), W = 2^log2_ways
//                            interleaved states, log2_ways in 0..5
//     u8 log2_chunk          10..40; chunks of C = 2^log2_chunk symbols
//     nruns                  varint >= 1: runs of present symbols, by index
//                            (index = symbol - lo, 0 .. span-1)
//     for each run r:        (r > 0: varint gap - 1, gap >= 1 absent indexes)
//                            varint length - 1 (present indexes in the run)
//                            The first run starts at index 0 and the last
//                            ends at span - 1; span <= 65536, and
//                            nsym = the number of present symbols <= M.
//     if nsym == 1:          nothing more: every symbol is lo.
//     else:
//       freq[nsym]           varints in [1, M - 1], summing to M
//       len[nchunks - 1]     little-endian byte length of each chunk body but
//                            the last (which is the rest of the stream),
//                            nchunks = ceil(count / C), each >= 4W, lb bytes
//                            each: lb = the fewest bytes that hold
//                            4W + 2 min(C, count), the largest body possible
//                            (fixed width, so the encoder writes them after
//                            the bodies)
//       chunk bodies         chunk k codes symbols [k*C, min((k+1)*C, count))
// A chunk body: W final states (u32 little-endian, state j first), then the
// renormalisation words (u16 little-endian), read front to back. Symbol i of
// the chunk (0-based) belongs to state i mod W; symbols are decoded in order
// i = 0, 1, ..., each renormalising right after it. Decoding symbol i with state
// x:  slot = x & (M-1); s = the index whose [cum, cum + freq) holds slot;
//     x = freq[s] * (x >> S) + slot - cum[s];  if x < 2^16: x = (x << 16) | next word.
// Every state starts (encoder) and must end (decoder) at L = 2^16, and every
// word of the body must be consumed: this detects nearly every corruption.
// Encoding runs backwards (x >= freq << (32 - S) emits x & 0xFFFF, x >>= 16;
// then x = (x / freq) * M + x % freq + cum), so the words come out in the
// order the decoder reads them. Chunks are independent, so any number of
// threads encodes or decodes them; the bytes never depend on `nthreads`.
//
// The encoder's choices (recorded in the stream; the decoder derives only lb):
// S = clamp(ceil(log2(nsym)) + 4, 12, 16); W = 1 below 2^13 symbols, 8 below
// 2^16, else 32; C = 2^20. Frequencies: normalize_frequencies_v2(counts, S)
// (largest remainders), which the Python reference (quant_reference) mirrors.
//
// Format 1 (issue 3; decoded forever, written on request): single 32-bit state,
// byte renormalisation, 16-bit frequencies. All integers LEB128 varints.
//   count                    number of symbols
//   if count > 0:
//     zigzag(min_symbol)     smallest symbol
//     span                   max_symbol - min_symbol + 1 (<= 65536)
//     freq[span]             normalised frequencies, summing to 2^16
//                            (normalize_frequencies)
//     if more than one symbol is present:
//       u32 little-endian    final rANS state
//       bytes                the rANS byte stream (decoded front to back)
//
// Both decoders check every bound (every size computation is overflow
// checked) and throw std::invalid_argument on any inconsistency; they never
// allocate from a size the stream claims: the output is the caller's, sized by
// the caller's count, and working memory is bounded by 2^16-entry tables and
// by the stream's own length.
#pragma once

#include <cstdint>
#include <vector>

#include "quantonium/layout.hpp"

namespace qn {

inline constexpr int kRansScaleBits = 16;  ///< format 1
inline constexpr std::uint32_t kRansScale = 1u << kRansScaleBits;
inline constexpr index_t kRansMaxSpan = 65536;

/// Encoder options. 0 means "the default for this size" (see above).
struct RansOptions {
  int format = 2;       ///< 1 or 2
  int nthreads = 1;     ///< threads over the chunks (format 2); results do not depend on it
  int ways = 0;         ///< format 2: 1, 2, 4, 8, 16 or 32 interleaved states
  int chunk_log2 = 0;   ///< format 2: chunk size 2^chunk_log2 symbols, 10..40
  int scale_bits = 0;   ///< format 2: 10..16 (must give M >= present symbols)
};

/// Format 1 normalisation: counts -> frequencies summing to 2^16, every
/// present symbol >= 1 (the deficit goes to the largest frequency).
std::vector<std::uint32_t> normalize_frequencies(const std::vector<std::uint64_t>& counts);

/// Format 2 normalisation to 2^scale_bits: floor(count * M / total) (at least
/// 1 for a present symbol); a deficit is given +1 at a time by largest
/// remainder (count * M mod total; lower index first on ties), an excess is
/// taken 1 at a time from the largest frequency (lower index first on ties).
/// Counts are over the span (zeros allowed); the total must be < 2^47.
std::vector<std::uint32_t> normalize_frequencies_v2(const std::vector<std::uint64_t>& counts,
                                                    int scale_bits);

/// The scale the format-2 encoder picks for `nsym` present symbols.
int rans_default_scale_bits(index_t nsym);

/// Encodes signed symbols (int8/int16) or bytes; default options (format 2).
template <class S>
std::vector<std::uint8_t> rans_encode(const S* symbols, index_t count);

template <class S>
std::vector<std::uint8_t> rans_encode(const S* symbols, index_t count, const RansOptions& opts);

/// Decodes exactly `count` symbols (either format) into `out`; throws
/// std::invalid_argument on a malformed stream (wrong count, bad table,
/// truncation, trailing bytes, a symbol outside S, final-state mismatch).
template <class S>
void rans_decode(const std::uint8_t* data, index_t size, index_t count, S* out);

template <class S>
void rans_decode(const std::uint8_t* data, index_t size, index_t count, S* out, int nthreads);

/// Checks everything of a stream but its payload (format 2: count, table,
/// chunk lengths; format 1: count) for `count` symbols of S, allocating
/// nothing sized by the stream: call it before allocating the output.
template <class S>
void rans_check_stream(const std::uint8_t* data, index_t size, index_t count);

/// Number of symbols a stream says it holds (either format; reads the header only).
index_t rans_stream_count(const std::uint8_t* data, index_t size);

/// 1 or 2: the format of a stream (from its first bytes).
int rans_stream_format(const std::uint8_t* data, index_t size);

/// What a format-2 stream with these symbol counts (over the span, from
/// `min_symbol`) costs, without coding it.
struct RansSizeEstimate {
  index_t header_bytes = 0;     ///< exact: everything but the chunk bodies
  double payload_bytes = 0.0;   ///< chunk bodies: the cross-entropy of the counts under
                                ///< the normalised frequencies, + flushed states and
                                ///< half a word per chunk
  int scale_bits = 0;
  int ways = 0;
  index_t nchunks = 0;
};
RansSizeEstimate rans_estimate_size(const std::vector<std::uint64_t>& counts,
                                    std::int64_t min_symbol);

}  // namespace qn

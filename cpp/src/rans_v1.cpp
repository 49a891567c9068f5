// Format 1 of the rANS stream (issue 3): order-0, byte-wise renormalisation,
// one 32-bit state, 16-bit frequencies, after Fabian Giesen's public-domain
// description of rANS. Decoded forever (existing .qnt files hold it); written
// only on request (RansOptions::format = 1). Layout: quantonium/entropy.hpp.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "quantonium/entropy.hpp"
#include "rans_common.hpp"
#include "rans_internal.hpp"

namespace qn {

using namespace rans_detail;

namespace {
constexpr std::uint32_t kRansL = 1u << 23;  // lower bound of the normalised state
}  // namespace

std::vector<std::uint32_t> normalize_frequencies(const std::vector<std::uint64_t>& counts) {
  std::uint64_t total = 0;
  for (auto c : counts) {
    if (__builtin_add_overflow(total, c, &total))
      throw std::invalid_argument("rANS: symbol counts overflow");
  }
  std::vector<std::uint32_t> f(counts.size(), 0);
  if (total == 0) return f;
  if (total >= (std::uint64_t(1) << 47))
    throw std::invalid_argument("rANS: more than 2^47 symbols in one stream");
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    // floor(count * M / total), at least 1 (exact: count * 2^16 < 2^63)
    const std::uint64_t v = counts[i] * kRansScale / total;
    f[i] = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, v));
    sum += f[i];
  }
  // Fix the sum to exactly M: the deficit goes to, and an excess comes from,
  // the largest frequency (lowest index on ties), repeatedly.
  std::int64_t diff = static_cast<std::int64_t>(kRansScale) - sum;
  while (diff != 0) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < f.size(); ++i)
      if (f[i] > f[best]) best = i;
    if (diff > 0) {
      f[best] += static_cast<std::uint32_t>(diff);
      diff = 0;
    } else {
      const std::int64_t take = std::min<std::int64_t>(-diff, static_cast<std::int64_t>(f[best]) - 1);
      if (take <= 0) throw std::invalid_argument("rANS: more symbols than frequency slots");
      f[best] -= static_cast<std::uint32_t>(take);
      diff += take;
    }
  }
  return f;
}

namespace rans_detail {

template <class S>
std::vector<std::uint8_t> encode_v1(const S* symbols, index_t count) {
  std::vector<std::uint8_t> out;
  if (count < 0) throw std::invalid_argument("rANS: negative count");
  put_varint(out, static_cast<std::uint64_t>(count));
  if (count == 0) return out;
  std::int64_t lo = symbols[0], hi = symbols[0];
  for (index_t i = 1; i < count; ++i) {
    lo = std::min<std::int64_t>(lo, symbols[i]);
    hi = std::max<std::int64_t>(hi, symbols[i]);
  }
  const index_t span = static_cast<index_t>(hi - lo + 1);  // S is at most 16 bits: no overflow
  if (span > kRansMaxSpan) throw std::invalid_argument("rANS: symbol span exceeds 65536");
  std::vector<std::uint64_t> counts(static_cast<std::size_t>(span), 0);
  for (index_t i = 0; i < count; ++i) ++counts[static_cast<std::size_t>(symbols[i] - lo)];
  const auto freq = normalize_frequencies(counts);
  put_varint(out, zigzag(lo));
  put_varint(out, static_cast<std::uint64_t>(span));
  for (auto f : freq) put_varint(out, f);
  if (span == 1 || std::count(freq.begin(), freq.end(), kRansScale) == 1) return out;

  std::vector<std::uint32_t> cum(freq.size() + 1, 0);
  for (std::size_t i = 0; i < freq.size(); ++i) cum[i + 1] = cum[i] + freq[i];
  // Encode backwards, emitting bytes backwards into a buffer that grows at the
  // front. Its first size is bounded (count is < 2^47 here, so no overflow).
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(std::min<index_t>(count, index_t(1) << 20)) + 16);
  std::size_t pos = buf.size();
  std::uint32_t x = kRansL;
  for (index_t i = count; i-- > 0;) {
    const auto s = static_cast<std::size_t>(symbols[i] - lo);
    const std::uint32_t f = freq[s];
    const std::uint32_t x_max = ((kRansL >> kRansScaleBits) << 8) * f;
    while (x >= x_max) {
      if (pos == 0) {  // grow at the front
        std::size_t bigger_size;
        if (__builtin_mul_overflow(buf.size(), std::size_t(2), &bigger_size))
          throw std::length_error("rANS: output too large");
        std::vector<std::uint8_t> bigger(bigger_size);
        std::memcpy(bigger.data() + buf.size(), buf.data(), buf.size());
        pos = buf.size();
        buf.swap(bigger);
      }
      buf[--pos] = static_cast<std::uint8_t>(x & 0xFF);
      x >>= 8;
    }
    x = ((x / f) << kRansScaleBits) + (x % f) + cum[s];
  }
  for (int k = 0; k < 4; ++k) out.push_back(static_cast<std::uint8_t>(x >> (8 * k)));
  out.insert(out.end(), buf.begin() + static_cast<std::ptrdiff_t>(pos), buf.end());
  return out;
}

template <class S>
void decode_v1(const std::uint8_t* data, index_t size, index_t count, S* out) {
  Reader r{data, data + size};
  const auto n = r.varint();
  if (n != static_cast<std::uint64_t>(count))
    bad("holds " + std::to_string(n) + " symbols, expected " + std::to_string(count));
  if (count == 0) {
    if (r.p != r.end) bad("trailing bytes");
    return;
  }
  const std::int64_t lo = unzigzag(r.varint());
  const auto span64 = r.varint();
  if (span64 == 0 || span64 > static_cast<std::uint64_t>(kRansMaxSpan)) bad("bad symbol span");
  const auto span = static_cast<std::size_t>(span64);
  // lo is checked against both limits before lo + span - 1 is formed, so the
  // sum cannot overflow (|lo| <= 2^15 then).
  if (lo < std::numeric_limits<S>::min() || lo > std::numeric_limits<S>::max() ||
      lo + static_cast<std::int64_t>(span) - 1 > std::numeric_limits<S>::max())
    bad("symbols outside the output type's range");
  std::vector<std::uint32_t> freq(span);
  std::uint64_t total = 0;
  std::size_t nonzero = 0, last = 0;
  for (std::size_t i = 0; i < span; ++i) {
    const auto f = r.varint();
    if (f > kRansScale) bad("frequency too large");
    freq[i] = static_cast<std::uint32_t>(f);
    total += f;  // <= 65536 * 65536: no overflow
    if (f) ++nonzero, last = i;
  }
  if (total != kRansScale) bad("frequencies do not sum to 2^16");
  if (nonzero == 1) {  // a single symbol: no payload
    if (r.p != r.end) bad("trailing bytes");
    std::fill(out, out + count, static_cast<S>(lo + static_cast<std::int64_t>(last)));
    return;
  }
  std::vector<std::uint32_t> cum(span + 1, 0);
  for (std::size_t i = 0; i < span; ++i) cum[i + 1] = cum[i] + freq[i];
  std::vector<std::uint16_t> slot2sym(kRansScale);
  for (std::size_t s = 0; s < span; ++s)
    for (std::uint32_t k = cum[s]; k < cum[s + 1]; ++k) slot2sym[k] = static_cast<std::uint16_t>(s);
  if (r.end - r.p < 4) bad("truncated state");
  std::uint32_t x = 0;
  for (int k = 0; k < 4; ++k) x |= static_cast<std::uint32_t>(*r.p++) << (8 * k);
  const std::uint8_t* p = r.p;
  const std::uint8_t* end = r.end;
  constexpr std::uint32_t mask = kRansScale - 1;
  for (index_t i = 0; i < count; ++i) {
    const std::uint32_t slot = x & mask;
    const std::uint16_t s = slot2sym[slot];
    out[i] = static_cast<S>(lo + s);
    x = freq[s] * (x >> kRansScaleBits) + slot - cum[s];
    while (x < kRansL) {
      if (p >= end) bad("truncated payload");
      x = (x << 8) | *p++;
    }
  }
  if (p != end) bad("trailing bytes");
  if (x != kRansL) bad("final state mismatch (corrupted payload)");
}

template std::vector<std::uint8_t> encode_v1<std::int8_t>(const std::int8_t*, index_t);
template std::vector<std::uint8_t> encode_v1<std::int16_t>(const std::int16_t*, index_t);
template std::vector<std::uint8_t> encode_v1<std::uint8_t>(const std::uint8_t*, index_t);
template void decode_v1<std::int8_t>(const std::uint8_t*, index_t, index_t, std::int8_t*);
template void decode_v1<std::int16_t>(const std::uint8_t*, index_t, index_t, std::int16_t*);
template void decode_v1<std::uint8_t>(const std::uint8_t*, index_t, index_t, std::uint8_t*);

}  // namespace rans_detail
}  // namespace qn

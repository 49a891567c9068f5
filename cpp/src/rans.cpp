// The rANS stream layer: format 2 (interleaved states, chunks, threads), the
// public entry points for both formats, and the size estimate used by rate
// allocation. Layout and guarantees: include/quantonium/entropy.hpp; chunk
// kernels: rans_kernels.cpp; format 1: rans_v1.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <queue>
#include <string>

#include "parallel.hpp"
#include "quantonium/entropy.hpp"
#include "rans_common.hpp"
#include "rans_internal.hpp"

namespace qn {

using namespace rans_detail;

namespace {

constexpr std::uint8_t kMagic0 = 0x80, kMagic1 = 0x00, kFormat2 = 2;
constexpr int kMinScale = 10, kMaxScale = 16;
constexpr int kMinChunkLog2 = 10, kMaxChunkLog2 = 40, kDefaultChunkLog2 = 20;
constexpr std::uint64_t kMaxSymbols = std::uint64_t(1) << 47;

int ceil_log2(std::uint64_t v) {
  int k = 0;
  while ((std::uint64_t(1) << k) < v) ++k;
  return k;
}

int default_ways(index_t count) {
  if (count < (index_t(1) << 13)) return 1;
  if (count < (index_t(1) << 16)) return 8;
  return 32;
}

int log2_exact(int v) {
  int k = 0;
  while ((1 << k) < v) ++k;
  return (1 << k) == v ? k : -1;
}

/// Runs of present indexes: (start, length) pairs.
std::vector<std::pair<std::uint32_t, std::uint32_t>> runs_of(const std::vector<std::uint64_t>& counts) {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> runs;
  for (std::uint32_t i = 0; i < counts.size(); ++i) {
    if (!counts[i]) continue;
    if (!runs.empty() && runs.back().first + runs.back().second == i)
      ++runs.back().second;
    else
      runs.push_back({i, 1});
  }
  return runs;
}

/// Writes zigzag(lo), S, log2 W, log2 C, the runs and (nsym >= 2) the frequencies.
void put_table(std::vector<std::uint8_t>& out, std::int64_t lo, int sb, int log2w, int log2c,
               const std::vector<std::uint64_t>& counts, const std::vector<std::uint32_t>& freq) {
  put_varint(out, zigzag(lo));
  out.push_back(static_cast<std::uint8_t>((sb - kMinScale) | log2w << 3));
  out.push_back(static_cast<std::uint8_t>(log2c));
  const auto runs = runs_of(counts);
  put_varint(out, runs.size());
  std::uint32_t next = 0;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    if (r > 0) put_varint(out, runs[r].first - next - 1);
    put_varint(out, runs[r].second - 1);
    next = runs[r].first + runs[r].second;
  }
  if (!freq.empty())
    for (std::size_t i = 0; i < counts.size(); ++i)
      if (counts[i]) put_varint(out, freq[i]);
}

struct Chosen {
  int sb, ways, log2c;
  index_t nsym;
};

Chosen choose(const std::vector<std::uint64_t>& counts, index_t count, const RansOptions& o) {
  Chosen c{};
  c.nsym = 0;
  for (auto v : counts) c.nsym += v != 0;
  c.sb = o.scale_bits ? o.scale_bits : rans_default_scale_bits(c.nsym);
  if (c.sb < kMinScale || c.sb > kMaxScale)
    throw std::invalid_argument("rANS: scale_bits must be in 10..16");
  if ((index_t(1) << c.sb) < c.nsym)
    throw std::invalid_argument("rANS: scale_bits " + std::to_string(c.sb) + " is too small for " +
                                std::to_string(c.nsym) + " distinct symbols");
  c.ways = o.ways ? o.ways : default_ways(count);
  if (log2_exact(c.ways) < 0 || c.ways > 32)
    throw std::invalid_argument("rANS: ways must be 1, 2, 4, 8, 16 or 32");
  c.log2c = o.chunk_log2 ? o.chunk_log2 : kDefaultChunkLog2;
  if (c.log2c < kMinChunkLog2 || c.log2c > kMaxChunkLog2)
    throw std::invalid_argument("rANS: chunk_log2 must be in 10..40");
  return c;
}

/// Bytes of a little-endian length field that holds values up to v.
int length_bytes(index_t v) {
  int n = 1;
  while (n < 8 && (static_cast<std::uint64_t>(v) >> (8 * n)) != 0) ++n;
  return n;
}

/// A per-thread scratch buffer of at least `size` bytes, kept between calls
/// (up to 64 MiB) so that repeated encodes do not fault fresh pages in.
std::uint8_t* scratch_buffer(index_t size) {
  thread_local std::unique_ptr<std::uint8_t[]> buf;
  thread_local index_t have = 0;
  thread_local std::unique_ptr<std::uint8_t[]> big;  // a larger one, freed by the next call
  big.reset();
  if (size <= have) return buf.get();
  if (size > (index_t(64) << 20)) {
    big.reset(new std::uint8_t[static_cast<std::size_t>(size)]);
    return big.get();
  }
  buf.reset(new std::uint8_t[static_cast<std::size_t>(size)]);
  have = size;
  return buf.get();
}

index_t chunk_count(index_t count, int log2c) {
  const index_t C = index_t(1) << log2c;
  return count / C + (count % C != 0);  // no count + C - 1: it could overflow
}

template <class S>
std::vector<std::uint8_t> encode_v2(const S* symbols, index_t count, const RansOptions& o) {
  std::vector<std::uint8_t> out{kMagic0, kMagic1, kFormat2};
  if (count < 0) throw std::invalid_argument("rANS: negative count");
  if (static_cast<std::uint64_t>(count) >= kMaxSymbols)
    throw std::invalid_argument("rANS: more than 2^47 symbols in one stream");
  if (o.nthreads < 1) throw std::invalid_argument("rANS: nthreads must be >= 1");
  put_varint(out, static_cast<std::uint64_t>(count));
  if (count == 0) return out;
  const auto full = histogram(symbols, count, o.nthreads);
  std::size_t first = 0, last = full.size() - 1;
  while (!full[first]) ++first;
  while (!full[last]) --last;
  const std::vector<std::uint64_t> counts(full.begin() + first, full.begin() + last + 1);
  const std::int64_t lo = static_cast<std::int64_t>(first) + std::numeric_limits<S>::min();
  const Chosen ch = choose(counts, count, o);
  std::vector<std::uint32_t> freq;
  if (ch.nsym > 1) freq = normalize_frequencies_v2(counts, ch.sb);
  put_table(out, lo, ch.sb, log2_exact(ch.ways), ch.log2c, counts, freq);
  if (ch.nsym == 1) return out;

  EncTable t;
  t.scale_bits = ch.sb;
  t.lo = static_cast<std::int32_t>(lo);
  t.info.assign(counts.size(), 0);
  t.rcp.assign(counts.size(), 0.0);
  std::uint32_t cum = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    t.info[i] = freq[i] | cum << 16;
    if (freq[i]) t.rcp[i] = 1.0 / freq[i];
    cum += freq[i];
  }
  const index_t C = index_t(1) << ch.log2c;
  const index_t nchunks = chunk_count(count, ch.log2c);
  // at most one word per symbol: a body has at most 4W + 2C bytes (C <= 2^40)
  const index_t cap = 4 * ch.ways + 2 * std::min(C, count);
  const int lb = length_bytes(cap);
  const std::size_t len_pos = out.size();
  out.resize(len_pos + static_cast<std::size_t>((nchunks - 1) * lb));  // patched below
  std::vector<index_t> lens(static_cast<std::size_t>(nchunks));
  {  // reserve what the cross-entropy predicts (+1%): fresh pages are costly, copies more so
    double bits = 0.0;
    for (std::size_t i = 0; i < counts.size(); ++i)
      if (counts[i]) bits += static_cast<double>(counts[i]) * (ch.sb - std::log2(static_cast<double>(freq[i])));
    const double want = static_cast<double>(out.size()) + bits / 8.0 * 1.01 +
                        static_cast<double>(nchunks) * (4.0 * ch.ways + 2.0) + 64.0;
    out.reserve(static_cast<std::size_t>(std::min(want, static_cast<double>(out.size()) +
                                                            static_cast<double>(nchunks) * static_cast<double>(cap))));
  }
  const int workers = static_cast<int>(std::min<index_t>(o.nthreads, nchunks));
  if (workers == 1) {  // straight into the output, through one reused scratch buffer
    std::uint8_t* scratch = scratch_buffer(cap);
    for (index_t k = 0; k < nchunks; ++k) {
      const index_t i0 = k * C, m = std::min(C, count - i0);
      std::uint8_t* end = scratch + cap;
      const std::uint8_t* start = encode_chunk(symbols + i0, m, ch.ways, t, end);
      lens[static_cast<std::size_t>(k)] = end - start;
      out.insert(out.end(), start, static_cast<const std::uint8_t*>(end));
    }
  } else {
    std::vector<std::vector<std::uint8_t>> bodies(static_cast<std::size_t>(nchunks));
    detail::parallel_for(nchunks, workers, 1, [&](index_t b, index_t e) {
      std::uint8_t* scratch = scratch_buffer(cap);
      for (index_t k = b; k < e; ++k) {
        const index_t i0 = k * C, m = std::min(C, count - i0);
        std::uint8_t* end = scratch + cap;
        const std::uint8_t* start = encode_chunk(symbols + i0, m, ch.ways, t, end);
        bodies[static_cast<std::size_t>(k)].assign(start, static_cast<const std::uint8_t*>(end));
      }
    });
    std::size_t payload = 0;
    for (auto& b : bodies) payload += b.size();
    out.reserve(out.size() + payload);
    for (index_t k = 0; k < nchunks; ++k) {
      auto& b = bodies[static_cast<std::size_t>(k)];
      lens[static_cast<std::size_t>(k)] = static_cast<index_t>(b.size());
      out.insert(out.end(), b.begin(), b.end());
      std::vector<std::uint8_t>().swap(b);
    }
  }
  for (index_t k = 0; k + 1 < nchunks; ++k)  // the last chunk's length is implied
    for (int i = 0; i < lb; ++i)
      out[len_pos + static_cast<std::size_t>(k * lb + i)] =
          static_cast<std::uint8_t>(static_cast<std::uint64_t>(lens[static_cast<std::size_t>(k)]) >> (8 * i));
  return out;
}

struct Header2 {
  std::int64_t lo = 0;
  int sb = 0, ways = 0, log2c = 0;
  index_t span = 0, nsym = 0;
  std::vector<std::uint32_t> present;  // index of each present symbol
};

/// Reads the format-2 table; `r` is left at the frequencies.
Header2 read_table(Reader& r) {
  Header2 h;
  h.lo = unzigzag(r.varint());
  const int shape = r.byte();
  h.sb = kMinScale + (shape & 7);
  const int lw = shape >> 3;
  if (h.sb > kMaxScale) bad("scale bits out of range");
  if (lw > 5) bad("number of ways out of range");
  h.ways = 1 << lw;
  h.log2c = r.byte();
  if (h.log2c < kMinChunkLog2 || h.log2c > kMaxChunkLog2) bad("chunk size out of range");
  const auto nruns = varint_in(r, 1, kRansMaxSpan, "number of runs");
  std::uint64_t pos = 0;
  for (std::uint64_t k = 0; k < nruns; ++k) {
    // each addend is bounded before it is added, so pos stays <= 3 * 2^16
    if (k > 0) pos += 1 + varint_in(r, 0, kRansMaxSpan - 1, "gap");
    const std::uint64_t len = 1 + varint_in(r, 0, kRansMaxSpan - 1, "run length");
    if (pos + len > static_cast<std::uint64_t>(kRansMaxSpan)) bad("symbol span exceeds 65536");
    for (std::uint64_t i = 0; i < len; ++i) h.present.push_back(static_cast<std::uint32_t>(pos + i));
    pos += len;
  }
  h.span = static_cast<index_t>(pos);
  h.nsym = static_cast<index_t>(h.present.size());
  if (h.nsym > (index_t(1) << h.sb)) bad("more symbols than frequency slots");
  return h;
}

/// Everything of a format-2 stream but its chunk bodies, validated.
struct Parsed2 {
  Header2 h;
  std::vector<std::uint32_t> freq;  // per present symbol
  std::vector<index_t> offs;        // chunk k's body: [base + offs[k], base + offs[k+1])
  const std::uint8_t* base = nullptr;
  bool empty = false;
};

Parsed2 parse_v2(const std::uint8_t* data, index_t size, index_t count, std::int64_t tmin,
                 std::int64_t tmax) {
  Parsed2 p;
  Reader r{data + 3, data + size};
  const auto n = r.varint();
  if (n != static_cast<std::uint64_t>(count))
    bad("holds " + std::to_string(n) + " symbols, expected " + std::to_string(count));
  if (count == 0) {
    if (r.p != r.end) bad("trailing bytes");
    p.empty = true;
    return p;
  }
  p.h = read_table(r);
  const Header2& h = p.h;
  // lo is bounded on both sides before lo + span - 1 is formed (|lo| <= 2^16 then)
  if (h.lo < tmin || h.lo > tmax || h.lo + h.span - 1 > tmax)
    bad("symbols outside the output type's range");
  if (h.nsym == 1) {
    if (r.p != r.end) bad("trailing bytes");
    return p;
  }
  const std::uint32_t M = 1u << h.sb;
  p.freq.resize(static_cast<std::size_t>(h.nsym));
  std::uint64_t total = 0;
  for (auto& f : p.freq) {
    f = static_cast<std::uint32_t>(varint_in(r, 1, M - 1, "frequency"));
    total += f;  // <= 2^16 * 2^16
  }
  if (total != M) bad("frequencies do not sum to 2^scale_bits");
  // chunk lengths: nchunks - 1 of them (the last body is the rest), lb bytes
  // each, lb derived from the largest body possible. Every chunk needs 4W
  // state bytes, and all but the last lb length bytes, so nchunks is checked
  // against the bytes left before anything is sized by it.
  const index_t C = index_t(1) << h.log2c;
  const int lb = length_bytes(4 * h.ways + 2 * std::min(C, count));
  const index_t nchunks = chunk_count(count, h.log2c);
  if (r.left() < 4 * h.ways || nchunks - 1 > r.left() / (lb + 4 * h.ways)) bad("truncated chunk table");
  p.offs.assign(static_cast<std::size_t>(nchunks) + 1, 0);
  for (index_t k = 0; k + 1 < nchunks; ++k) {
    std::uint64_t len = 0;
    for (int i = 0; i < lb; ++i) len |= static_cast<std::uint64_t>(*r.p++) << (8 * i);
    if (len < static_cast<std::uint64_t>(4 * h.ways)) bad("chunk length out of range");
    index_t next;  // len < 2^64 / 2^8 ... but a sum of many can still overflow
    if (len > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) ||
        __builtin_add_overflow(p.offs[k], static_cast<index_t>(len), &next))
      bad("chunk lengths overflow");
    p.offs[k + 1] = next;
  }
  if (r.left() < 4 * h.ways || p.offs[nchunks - 1] > r.left() - 4 * h.ways) bad("truncated payload");
  p.offs[nchunks] = r.left();
  p.base = r.p;
  return p;
}

template <class S>
void decode_v2(const std::uint8_t* data, index_t size, index_t count, S* out, int nthreads) {
  const Parsed2 p = parse_v2(data, size, count, std::numeric_limits<S>::min(), std::numeric_limits<S>::max());
  if (p.empty) return;
  const Header2& h = p.h;
  if (h.nsym == 1) {
    std::fill(out, out + count, static_cast<S>(h.lo));
    return;
  }
  const std::uint32_t M = 1u << h.sb;
  DecTable t;
  t.scale_bits = h.sb;
  t.lo = static_cast<std::int32_t>(h.lo);
  t.small = h.span <= 256 && h.sb <= 12;
  if (t.small)
    t.packed.resize(M);
  else
    t.wide.resize(M);
  std::uint32_t cum = 0;
  for (index_t s = 0; s < h.nsym; ++s) {
    const std::uint32_t idx = h.present[static_cast<std::size_t>(s)], f = p.freq[static_cast<std::size_t>(s)];
    for (std::uint32_t k = 0; k < f; ++k) {
      if (t.small)
        t.packed[cum + k] = idx | f << 8 | k << 20;
      else
        t.wide[cum + k] = idx | std::uint64_t(f) << 16 | std::uint64_t(k) << 32;
    }
    cum += f;
  }
  const index_t C = index_t(1) << h.log2c;
  const index_t nchunks = static_cast<index_t>(p.offs.size()) - 1;
  detail::parallel_for(nchunks, nthreads, 1, [&](index_t b, index_t e) {
    for (index_t k = b; k < e; ++k) {
      const index_t i0 = k * C, m = std::min(C, count - i0);
      decode_chunk(p.base + p.offs[k], p.offs[k + 1] - p.offs[k], m, h.ways, t, out + i0);
    }
  });
}

bool is_v2(const std::uint8_t* data, index_t size) {
  return size >= 2 && data[0] == kMagic0 && data[1] == kMagic1;
}

void check_v2_magic(const std::uint8_t* data, index_t size) {
  if (size < 3) bad("truncated header");
  if (data[2] != kFormat2) bad("unknown format " + std::to_string(data[2]));
}

}  // namespace

int rans_default_scale_bits(index_t nsym) {
  return std::clamp(ceil_log2(static_cast<std::uint64_t>(std::max<index_t>(nsym, 1))) + 4, 12, 16);
}

std::vector<std::uint32_t> normalize_frequencies_v2(const std::vector<std::uint64_t>& counts,
                                                    int scale_bits) {
  if (scale_bits < 1 || scale_bits > 16) throw std::invalid_argument("rANS: scale_bits out of range");
  const std::uint64_t M = std::uint64_t(1) << scale_bits;
  std::uint64_t total = 0;
  std::size_t nsym = 0;
  for (auto c : counts) {
    if (__builtin_add_overflow(total, c, &total)) throw std::invalid_argument("rANS: counts overflow");
    nsym += c != 0;
  }
  std::vector<std::uint32_t> f(counts.size(), 0);
  if (total == 0) return f;
  if (total >= kMaxSymbols) throw std::invalid_argument("rANS: more than 2^47 symbols in one stream");
  if (nsym > M) throw std::invalid_argument("rANS: more distinct symbols than frequency slots");
  std::vector<std::uint64_t> rem(counts.size(), 0);
  std::int64_t sum = 0;
  std::vector<std::uint32_t> grow;  // candidates for +1: present, not raised from 0
  for (std::uint32_t i = 0; i < counts.size(); ++i) {
    if (!counts[i]) continue;
    const std::uint64_t v = counts[i] * M;  // < 2^47 * 2^16
    f[i] = static_cast<std::uint32_t>(v / total);
    rem[i] = v % total;
    if (f[i] == 0)
      f[i] = 1;
    else
      grow.push_back(i);
    sum += f[i];
  }
  std::int64_t diff = static_cast<std::int64_t>(M) - sum;
  if (diff > 0) {  // diff < len(grow): see entropy.hpp
    std::sort(grow.begin(), grow.end(), [&](std::uint32_t a, std::uint32_t b) {
      return rem[a] != rem[b] ? rem[a] > rem[b] : a < b;
    });
    for (std::int64_t k = 0; k < diff; ++k) ++f[grow[static_cast<std::size_t>(k)]];
  } else if (diff < 0) {
    auto less = [&](std::uint32_t a, std::uint32_t b) { return f[a] != f[b] ? f[a] < f[b] : a > b; };
    std::priority_queue<std::uint32_t, std::vector<std::uint32_t>, decltype(less)> heap(less);
    for (std::uint32_t i = 0; i < counts.size(); ++i)
      if (counts[i]) heap.push(i);
    for (; diff < 0; ++diff) {
      const std::uint32_t top = heap.top();
      heap.pop();
      if (f[top] < 2) throw std::logic_error("rANS: cannot normalise frequencies");
      --f[top];
      heap.push(top);
    }
  }
  return f;
}

template <class S>
std::vector<std::uint8_t> rans_encode(const S* symbols, index_t count, const RansOptions& opts) {
  if (opts.format == 1) return encode_v1(symbols, count);
  if (opts.format != 2) throw std::invalid_argument("rANS: format must be 1 or 2");
  return encode_v2(symbols, count, opts);
}

template <class S>
std::vector<std::uint8_t> rans_encode(const S* symbols, index_t count) {
  return rans_encode(symbols, count, RansOptions{});
}

template <class S>
void rans_decode(const std::uint8_t* data, index_t size, index_t count, S* out, int nthreads) {
  if (count < 0) throw std::invalid_argument("rANS: count must be >= 0");
  if (size < 0) throw std::invalid_argument("rANS: size must be >= 0");
  if (nthreads < 1) throw std::invalid_argument("rANS: nthreads must be >= 1");
  if (is_v2(data, size)) {
    check_v2_magic(data, size);
    decode_v2(data, size, count, out, nthreads);
  } else {
    decode_v1(data, size, count, out);
  }
}

template <class S>
void rans_decode(const std::uint8_t* data, index_t size, index_t count, S* out) {
  rans_decode(data, size, count, out, 1);
}

template <class S>
void rans_check_stream(const std::uint8_t* data, index_t size, index_t count) {
  if (count < 0) throw std::invalid_argument("rANS: count must be >= 0");
  if (rans_stream_format(data, size) == 2) {
    parse_v2(data, size, count, std::numeric_limits<S>::min(), std::numeric_limits<S>::max());
    return;
  }
  const index_t n = rans_stream_count(data, size);
  if (n != count) bad("holds " + std::to_string(n) + " symbols, expected " + std::to_string(count));
}

int rans_stream_format(const std::uint8_t* data, index_t size) {
  if (!is_v2(data, size)) return 1;
  check_v2_magic(data, size);
  return 2;
}

index_t rans_stream_count(const std::uint8_t* data, index_t size) {
  Reader r{data, data + size};
  if (rans_stream_format(data, size) == 2) r.p += 3;
  const auto n = r.varint();
  if (n > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max())) bad("count too large");
  return static_cast<index_t>(n);
}

RansSizeEstimate rans_estimate_size(const std::vector<std::uint64_t>& counts, std::int64_t min_symbol) {
  RansSizeEstimate est;
  if (counts.size() > static_cast<std::size_t>(kRansMaxSpan))
    throw std::invalid_argument("rANS: symbol span exceeds 65536");
  std::uint64_t total = 0;
  for (auto c : counts)
    if (__builtin_add_overflow(total, c, &total)) throw std::invalid_argument("rANS: counts overflow");
  std::vector<std::uint8_t> head{kMagic0, kMagic1, kFormat2};
  put_varint(head, total);
  if (total == 0) {
    est.header_bytes = static_cast<index_t>(head.size());
    return est;
  }
  if (total >= kMaxSymbols) throw std::invalid_argument("rANS: more than 2^47 symbols in one stream");
  if (counts.front() == 0 || counts.back() == 0)
    throw std::invalid_argument("rANS: counts must start and end with a present symbol");
  const Chosen ch = choose(counts, static_cast<index_t>(total), RansOptions{});
  std::vector<std::uint32_t> freq;
  if (ch.nsym > 1) freq = normalize_frequencies_v2(counts, ch.sb);
  put_table(head, min_symbol, ch.sb, log2_exact(ch.ways), ch.log2c, counts, freq);
  est.header_bytes = static_cast<index_t>(head.size());
  est.scale_bits = ch.sb;
  est.ways = ch.ways;
  if (ch.nsym == 1) return est;
  double bits = 0.0;
  for (std::size_t i = 0; i < counts.size(); ++i)
    if (counts[i])
      bits += static_cast<double>(counts[i]) * (ch.sb - std::log2(static_cast<double>(freq[i])));
  const index_t nchunks = chunk_count(static_cast<index_t>(total), ch.log2c);
  const index_t C = index_t(1) << ch.log2c;
  const int lb = length_bytes(4 * ch.ways + 2 * std::min(C, static_cast<index_t>(total)));
  est.nchunks = nchunks;
  est.header_bytes += (nchunks - 1) * lb;
  // per chunk: its share of the bits in 16-bit words (half a word lost on
  // average) and W flushed states
  est.payload_bytes = bits / 8.0 + static_cast<double>(nchunks) * (1.0 + 4.0 * ch.ways);
  return est;
}

#define QN_RANS_API(S)                                                                                   \
  template std::vector<std::uint8_t> rans_encode<S>(const S*, index_t);                                 \
  template std::vector<std::uint8_t> rans_encode<S>(const S*, index_t, const RansOptions&);             \
  template void rans_decode<S>(const std::uint8_t*, index_t, index_t, S*);                              \
  template void rans_decode<S>(const std::uint8_t*, index_t, index_t, S*, int);                          \
  template void rans_check_stream<S>(const std::uint8_t*, index_t, index_t);
QN_RANS_API(std::int8_t)
QN_RANS_API(std::int16_t)
QN_RANS_API(std::uint8_t)

}  // namespace qn

#include "trellis_encoder.h"

#include <algorithm>

#include "bitops.h"
#include "cpu_dispatch.h"

#ifdef SPARSECODEC_HAS_AVX2
#include <immintrin.h>
#endif

namespace sc {

namespace {

constexpr uint32_t kInfKey = (kTrellisInfCost << 16) | 0xFFFFu;

// Gathers the care bits (cw) of a words-long bit row into one value (k <= 64 care bits).
inline uint64_t compress_scalar(const uint64_t* row, const uint64_t* cw, int words) {
    uint64_t out = 0;
    int shift = 0;
    for (int w = 0; w < words; ++w) {
        if (cw[w]) out |= pext_portable(row[w], cw[w]) << shift;
        shift += popcount64(cw[w]);
    }
    return out;
}

#ifdef SPARSECODEC_HAS_AVX2
__attribute__((target("bmi2,popcnt"))) inline uint64_t compress_bmi2(const uint64_t* row,
                                                                    const uint64_t* cw, int words) {
    uint64_t out = 0;
    int shift = 0;
    for (int w = 0; w < words; ++w) {
        if (cw[w]) out |= _pext_u64(row[w], cw[w]) << shift;
        shift += popcount64(cw[w]);
    }
    return out;
}
#endif

}  // namespace

void trellis_transition_scalar(const uint32_t* key, const uint64_t* u, const uint64_t* v, int x_count,
                               uint32_t* best) {
    for (int n = 0; n < x_count; ++n) {
        uint32_t m = kInfKey + (64u << 16);
        for (int o = 0; o < x_count; ++o) {
            const uint32_t val = key[o] + (uint32_t(popcount64(u[o] ^ v[n])) << 16);
            m = val < m ? val : m;
        }
        best[n] = m;
    }
}

void trellis_transition_hypercube(const uint32_t* key, const uint64_t* u, const uint64_t* v, int x_count,
                                  int k, std::vector<uint32_t>& f, uint32_t* best) {
    const size_t size = size_t(1) << k;
    f.assign(size, kInfKey + (64u << 16));
    for (int o = 0; o < x_count; ++o) {
        uint32_t& slot = f[size_t(u[o])];
        slot = key[o] < slot ? key[o] : slot;
    }
    // Relaxing one dimension at a time yields min_q f0[q] + hamming(p, q) for every p.
    for (int b = 0; b < k; ++b) {
        const size_t bit = size_t(1) << b;
        for (size_t p = 0; p < size; ++p) {
            if (p & bit) continue;
            const uint32_t a = f[p], c = f[p | bit];
            const uint32_t a1 = a + (1u << 16), c1 = c + (1u << 16);
            f[p] = c1 < a ? c1 : a;
            f[p | bit] = a1 < c ? a1 : c;
        }
    }
    for (int n = 0; n < x_count; ++n) best[n] = f[size_t(v[n])];
}

TrellisEncoder::TrellisEncoder(const XorNetwork& net)
    : net_(net),
      n_in_(net.n_in),
      depth_(net.depth),
      words_(net.out_words),
      x_count_(1 << net.n_in),
      mid_bits_(net.n_in * (net.depth - 2)),
      state_count_(1 << (net.n_in * (net.depth - 1))) {
    lag_tables_.resize(size_t(depth_) * x_count_ * words_);
    for (int lag = 0; lag < depth_; ++lag)
        for (uint32_t x = 0; x < uint32_t(x_count_); ++x)
            net_.decode_window(uint64_t(x) << (n_in_ * lag),
                               lag_tables_.data() + (size_t(lag) * x_count_ + x) * words_);
}

void TrellisEncoder::transition(const uint64_t* cw, const uint64_t* tw, int k, uint16_t* back_row) {
    const uint32_t x_mask = uint32_t(x_count_ - 1);
    const int mid_count = 1 << mid_bits_;
    const bool wide = k > 64;
    const bool bmi2 = use_avx2();
    next_cost_.assign(size_t(state_count_), kTrellisInfCost);

    // comp_[lag * x_count + x]: care bits of lag_row(lag, x); then the target's care bits.
    if (!wide) {
        comp_.resize(size_t(depth_) * x_count_ + 1);
        for (int lag = 0; lag < depth_; ++lag)
            for (uint32_t x = 0; x < uint32_t(x_count_); ++x) {
                const uint64_t* row = lag_row(lag, x);
#ifdef SPARSECODEC_HAS_AVX2
                comp_[size_t(lag) * x_count_ + x] = bmi2 ? compress_bmi2(row, cw, words_) : compress_scalar(row, cw, words_);
#else
                comp_[size_t(lag) * x_count_ + x] = compress_scalar(row, cw, words_);
#endif
            }
#ifdef SPARSECODEC_HAS_AVX2
        comp_.back() = bmi2 ? compress_bmi2(tw, cw, words_) : compress_scalar(tw, cw, words_);
#else
        comp_.back() = compress_scalar(tw, cw, words_);
#endif
    }

    key_.resize(size_t(x_count_));
    best_.resize(size_t(x_count_));
    u_.resize(size_t(x_count_));
    std::vector<uint64_t> base_words(static_cast<size_t>(words_));
    const int old_lag = depth_ - 1;
    const int old_shift = mid_bits_;
    for (int mid = 0; mid < mid_count; ++mid) {
        bool any = false;
        for (uint32_t o = 0; o < uint32_t(x_count_); ++o) {
            const uint32_t c = cost_[size_t(uint32_t(mid) | (o << old_shift))];
            key_[o] = (std::min(c, kTrellisInfCost) << 16) | o;
            any |= c < kTrellisInfCost;
        }
        if (!any) continue;  // no reachable predecessor with this middle part
        if (!wide) {
            uint64_t base = comp_.back();
            for (int lag = 1; lag < depth_ - 1; ++lag)
                base ^= comp_[size_t(lag) * x_count_ + ((uint32_t(mid) >> (n_in_ * (lag - 1))) & x_mask)];
            const uint64_t* old_comp = comp_.data() + size_t(old_lag) * x_count_;
            const uint64_t* new_comp = comp_.data();
            for (int o = 0; o < x_count_; ++o) u_[size_t(o)] = old_comp[o] ^ base;
            // Pick the cheaper of the two exact methods; they return identical packed minima.
            const double pair_cost = double(x_count_) * x_count_ * (bmi2 ? 0.2 : 1.0);
            const double cube_cost = k <= 16 ? double(k + 1) * double(size_t(1) << k) * 4.0 : 1e300;
            if (cube_cost < pair_cost) {
                trellis_transition_hypercube(key_.data(), u_.data(), new_comp, x_count_, k, hyper_, best_.data());
            }
#ifdef SPARSECODEC_HAS_AVX2
            else if (bmi2 && k <= 32 && x_count_ % 8 == 0) {
                trellis_transition_avx2(key_.data(), u_.data(), new_comp, x_count_, best_.data());
            }
#endif
            else {
                trellis_transition_scalar(key_.data(), u_.data(), new_comp, x_count_, best_.data());
            }
        } else {
            // More than 64 care bits in one slice: full-width costs, scalar.
            for (int w = 0; w < words_; ++w) {
                uint64_t b = tw[w];
                for (int lag = 1; lag < depth_ - 1; ++lag)
                    b ^= lag_row(lag, (uint32_t(mid) >> (n_in_ * (lag - 1))) & x_mask)[w];
                base_words[size_t(w)] = b;
            }
            for (int n = 0; n < x_count_; ++n) {
                uint32_t m = kInfKey + (64u << 16);
                const uint64_t* nr = lag_row(0, uint32_t(n));
                for (int o = 0; o < x_count_; ++o) {
                    const uint64_t* orow = lag_row(old_lag, uint32_t(o));
                    uint32_t pc = 0;
                    for (int w = 0; w < words_; ++w)
                        pc += uint32_t(popcount64((nr[w] ^ orow[w] ^ base_words[size_t(w)]) & cw[w]));
                    const uint32_t val = key_[size_t(o)] + (pc << 16);
                    m = val < m ? val : m;
                }
                best_[size_t(n)] = m;
            }
        }
        for (uint32_t n = 0; n < uint32_t(x_count_); ++n) {
            const uint32_t s = n | (uint32_t(mid) << n_in_);
            next_cost_[s] = std::min(best_[n] >> 16, kTrellisInfCost);
            back_row[s] = uint16_t(best_[n] & 0xFFFFu);
        }
    }
    cost_.swap(next_cost_);
}

int64_t TrellisEncoder::encode_chain(const uint64_t* target, const uint64_t* care, int64_t plane_len,
                                     int64_t pos0, int64_t n_slices, uint64_t* words_out,
                                     std::vector<int64_t>& patches) {
    const int n_out = net_.n_out;
    cost_.assign(size_t(state_count_), kTrellisInfCost);
    cost_[0] = 0;  // the shift register starts from zeros
    back_.resize(size_t(n_slices) * size_t(state_count_));
    const size_t nwords = static_cast<size_t>(words_);
    std::vector<uint64_t> cw(nwords), tw(nwords), y(nwords);

    auto load_slice = [&](int64_t t) {
        const int64_t pos = pos0 + t * n_out;
        for (int w = 0; w < words_; ++w) {
            const int64_t p = pos + 64 * int64_t(w);
            const int64_t avail = std::min<int64_t>(plane_len - p, std::min(64, n_out - 64 * w));
            cw[size_t(w)] = avail > 0 ? read_bits(care, p, int(avail)) : 0;
            tw[size_t(w)] = avail > 0 ? read_bits(target, p, int(avail)) : 0;
        }
    };

    for (int64_t t = 0; t < n_slices; ++t) {
        load_slice(t);
        int k = 0;
        for (int w = 0; w < words_; ++w) k += popcount64(cw[size_t(w)]);
        transition(cw.data(), tw.data(), k, back_.data() + size_t(t) * state_count_);
        const uint32_t low = *std::min_element(cost_.begin(), cost_.end());
        for (uint32_t& c : cost_)
            if (c < kTrellisInfCost) c -= low;
    }

    // Trace the cheapest final state back to the first slice.
    uint32_t state = uint32_t(std::min_element(cost_.begin(), cost_.end()) - cost_.begin());
    const uint32_t x_mask = uint32_t(x_count_ - 1);
    for (int64_t t = n_slices - 1; t >= 0; --t) {
        words_out[t] = state & x_mask;
        const uint32_t old = back_[size_t(t) * state_count_ + state];
        state = (state >> n_in_) | (old << mid_bits_);
    }

    // Decode the chosen words and record every mismatching care bit as a patch.
    int64_t found = 0;
    for (int64_t t = 0; t < n_slices; ++t) {
        uint64_t win = 0;
        for (int lag = 0; lag < depth_ && lag <= t; ++lag) win |= words_out[t - lag] << (n_in_ * lag);
        net_.decode_window(win, y.data());
        load_slice(t);
        for (int w = 0; w < words_; ++w) {
            for (uint64_t bad = (y[size_t(w)] ^ tw[size_t(w)]) & cw[size_t(w)]; bad; bad &= bad - 1) {
                patches.push_back(pos0 + t * n_out + 64 * int64_t(w) + low_bit(bad));
                ++found;
            }
        }
    }
    return found;
}

}  // namespace sc

// AVX2 variants of the compressed-matmul kernels; compiled with -mavx2 -mbmi2 -mfma and called only
// after a CPU check. Per batch lane they perform exactly the scalar reference's operations in the
// same order (matmul_kernels.h); the vectors run across batch lanes or table entries.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "bitops.h"
#include "matmul_kernels.h"

namespace sc {

namespace {

constexpr int64_t kLutPanelBytes = 128 << 10;  // lookup tables of a panel of chunks
constexpr int64_t kSparsePanelBytes = 24 << 10;  // the slice of x a panel of columns reads (L1)

// The 8-bit keys of one row of a bit buffer, chunk by chunk. Aligned (the row starts on a byte and
// cols % 8 == 0): plain byte loads; otherwise bit reads, the last chunk narrower.
template <bool kAligned>
struct RowKeys {
    const uint64_t* bits;
    int64_t pos0;  // the row's first bit
    uint32_t operator()(int64_t c, int width) const {
        if (kAligned) return reinterpret_cast<const uint8_t*>(bits)[(pos0 >> 3) + c];
        return uint32_t(read_bits(bits, pos0 + 8 * c, width));
    }
};

// sparse_signed_sum's operations, with the entries read four at a time as one 64-bit word: half the
// loads per kept weight, the x_signed loads left to the load ports. The last, partial step adds
// x_signed[zero] (= 0) in the lanes past the segment, without branches.
inline float sparse_signed_sum_wide(const uint16_t* e, int64_t k0, int64_t k1, const float* x_signed, uint32_t zero) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, s4 = 0.0f, s5 = 0.0f, s6 = 0.0f, s7 = 0.0f;
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8) {
        uint64_t a, b;
        std::memcpy(&a, e + k, 8);
        std::memcpy(&b, e + k + 4, 8);
        s0 = s0 + x_signed[a & 0xFFFF];
        s1 = s1 + x_signed[(a >> 16) & 0xFFFF];
        s2 = s2 + x_signed[(a >> 32) & 0xFFFF];
        s3 = s3 + x_signed[a >> 48];
        s4 = s4 + x_signed[b & 0xFFFF];
        s5 = s5 + x_signed[(b >> 16) & 0xFFFF];
        s6 = s6 + x_signed[(b >> 32) & 0xFFFF];
        s7 = s7 + x_signed[b >> 48];
    }
    if (k < k1) {
        const int64_t last = k1 - 1;
        auto at = [&](int64_t i) -> uint32_t { return k + i <= last ? e[std::min(k + i, last)] : zero; };
        s0 = s0 + x_signed[at(0)];
        s1 = s1 + x_signed[at(1)];
        s2 = s2 + x_signed[at(2)];
        s3 = s3 + x_signed[at(3)];
        s4 = s4 + x_signed[at(4)];
        s5 = s5 + x_signed[at(5)];
        s6 = s6 + x_signed[at(6)];
        s7 = s7 + x_signed[at(7)];
    }
    const float s[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
    return sparse_lanes_sum(s);
}

// Batch 1, one (row, group) segment: eight kept weights per step, their x gathered and their values
// permuted out of the pattern table (gathered too when it spans more than two vectors).
float sparse_segment_gather(const SparsePlan& plan, int64_t k0, int64_t k1, const float* x, const float* values) {
    const int q = plan.q;
    const __m256 table_lo = _mm256_load_ps(values);
    const __m256 table_hi = q == 4 ? _mm256_load_ps(values + 8) : table_lo;
    const __m256i low = _mm256_set1_epi32((1 << q) - 1);
    const __m128i shift = _mm_cvtsi32_si128(q);
    __m256 acc = _mm256_setzero_ps();
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8) {
        const __m256i e = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(plan.entries + k)));
        __m256i col = e, code;
        if (plan.codes) {
            code = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(plan.codes + k)));
        } else {
            col = _mm256_srl_epi32(e, shift);
            code = _mm256_and_si256(e, low);
        }
        __m256 v;
        if (q <= 3) {
            v = _mm256_permutevar8x32_ps(table_lo, code);
        } else if (q == 4) {  // bit 3 of the code, moved to the sign bit, picks the upper half
            v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(table_lo, code), _mm256_permutevar8x32_ps(table_hi, code),
                                 _mm256_castsi256_ps(_mm256_slli_epi32(code, 28)));
        } else {
            v = _mm256_i32gather_ps(values, code, 4);
        }
        acc = _mm256_fmadd_ps(v, _mm256_i32gather_ps(x, col, 4), acc);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (int i = 0; k < k1; ++k, ++i) lanes[i] = std::fma(values[plan.code(k)], x[plan.column(k)], lanes[i]);
    // The horizontal sum in sparse_lanes_sum's order: halves, then pairs, then the last two.
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(_mm256_load_ps(lanes)), _mm256_extractf128_ps(_mm256_load_ps(lanes), 1));
    const __m128 pairs = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
}

// The first k in [k, k_end) with e[k] >= limit (limit < 65536), or k_end; e ascending.
inline int64_t first_at_least(const uint16_t* e, int64_t k, int64_t k_end, uint32_t limit) {
    const __m256i t = _mm256_set1_epi16(short(limit)), zero = _mm256_setzero_si256();
    for (; k + 16 <= k_end; k += 16) {  // saturating limit - e is zero exactly where e >= limit
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e + k));
        const uint32_t at = uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_subs_epu16(t, v), zero)));
        if (at) return k + __builtin_ctz(at) / 2;
    }
    for (; k < k_end; ++k)
        if (e[k] >= limit) return k;
    return k_end;
}

// One chunk of NB vectors of batch lanes for rows [r0, r1), with P = sparse_sets(NB) partial sums per
// lane. The columns are walked in panels whose slice of x stays in L1 while every row of the range
// uses it; each row's partial sums, result, position and group survive from panel to panel in
// `state` / `cursor`. Register set acc[i] holds partial sum (phase + i) % P, phase being that of the
// row's next kept weight when the panel (or a group) starts, so kept weights always go to acc[0],
// acc[1], ... in turn. A group is closed (y += sparse_sets_sum) as soon as its last entry is consumed:
// per lane exactly the reference's operations in its order.
template <int NB, bool kPacked>
void sparse_chunk(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in,
                  int64_t chunk, std::vector<float>& state, std::vector<int64_t>& cursor) {
    constexpr int P = sparse_sets(NB);
    constexpr int64_t width = NB * kLanes;
    const int q = w.q(), low = (1 << q) - 1;
    const int64_t groups = w.scales.groups, cols = w.cols, rows = r1 - r0;
    const uint16_t* entries = plan.entries;
    const uint8_t* codes = plan.codes;
    const float* x_chunk = in.x_cols + chunk * kChunkLanes * cols;  // [cols][width]
    const int64_t panel = std::max<int64_t>(16, kSparsePanelBytes / int64_t(sizeof(float)) / width);
    state.assign(size_t(rows * (P + 1) * width), 0.0f);  // per row: P partial sums, y
    cursor.assign(size_t(2 * rows), 0);  // per row: next entry, current group
    for (int64_t r = 0; r < rows; ++r) cursor[size_t(2 * r)] = plan.seg[(r0 + r) * groups];
    alignas(32) float values[256];
    for (int64_t c_end = std::min(cols, panel);; c_end = std::min(cols, c_end + panel)) {
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t* seg = plan.seg + (r0 + r) * groups;
            float* sums = state.data() + r * (P + 1) * width;
            float* ys = sums + P * width;
            int64_t k = cursor[size_t(2 * r)], g = cursor[size_t(2 * r + 1)];
            if (g == groups) continue;  // row complete
            // Entries are in column order along the row: the panel ends at the first column >= c_end.
            const int64_t row_end = seg[groups];
            const int64_t k_stop = c_end == cols ? row_end
                                                 : first_at_least(entries, k, row_end, uint32_t(kPacked ? c_end << q : c_end));
            int phase = int((k - seg[g]) % P);
            __m256 acc[P][NB];
            for (int i = 0; i < P; ++i)
                for (int b = 0; b < NB; ++b) acc[i][b] = _mm256_loadu_ps(sums + ((phase + i) % P) * width + b * kLanes);
            auto step = [&](int64_t kk, __m256* a) {
                const uint32_t e = entries[kk];
                const __m256 v = _mm256_broadcast_ss(values + (kPacked ? int(e) & low : codes[kk]));
                const float* xp = x_chunk + (kPacked ? e >> q : e) * width;
                for (int b = 0; b < NB; ++b) a[b] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xp + b * kLanes), a[b]);
            };
            pattern_values(w.scales.alpha(r0 + r, g), w.scales.beta(r0 + r, g), q, values);
            for (;;) {
                const int64_t group_end = seg[g + 1], end = std::min(group_end, k_stop);
                for (; k + P <= end; k += P)
                    for (int i = 0; i < P; ++i) step(k + i, acc[i]);
                for (int i = 0; k < end; ++k, ++i) step(k, acc[i]);  // fewer than P left
                if (k < group_end) break;  // the panel ends inside this group
                for (int b = 0; b < NB; ++b) {  // group g complete: y += the sums combined in set order
                    alignas(32) float set[P][kLanes];
                    for (int i = 0; i < P; ++i) _mm256_store_ps(set[(phase + i) % P], acc[i][b]);
                    __m256 s = _mm256_load_ps(set[0]);
                    if constexpr (P == 2) s = _mm256_add_ps(s, _mm256_load_ps(set[1]));
                    if constexpr (P == 4)
                        s = _mm256_add_ps(_mm256_add_ps(s, _mm256_load_ps(set[1])),
                                          _mm256_add_ps(_mm256_load_ps(set[2]), _mm256_load_ps(set[3])));
                    _mm256_storeu_ps(ys + b * kLanes, _mm256_add_ps(_mm256_loadu_ps(ys + b * kLanes), s));
                    for (int i = 0; i < P; ++i) acc[i][b] = _mm256_setzero_ps();
                }
                phase = 0;  // the next group's first kept weight goes to sum 0, in acc[0]
                if (++g == groups) break;
                pattern_values(w.scales.alpha(r0 + r, g), w.scales.beta(r0 + r, g), q, values);
            }
            for (int i = 0; i < P; ++i)
                for (int b = 0; b < NB; ++b) _mm256_storeu_ps(sums + ((phase + i) % P) * width + b * kLanes, acc[i][b]);
            cursor[size_t(2 * r)] = k;
            cursor[size_t(2 * r + 1)] = g;
        }
        if (c_end == cols) break;
    }
    const int64_t lane0 = chunk * kChunkLanes;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t l = 0; l < width && lane0 + l < in.batch; ++l)
            in.out[(lane0 + l) * w.rows + r0 + r] = state[size_t(r * (P + 1) * width + P * width + l)];
}

template <bool kPacked>
void sparse_chunks(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in) {
    thread_local std::vector<float> state;
    thread_local std::vector<int64_t> cursor;
    for (int64_t chunk = 0; chunk * kChunkBlocks < in.blocks; ++chunk) {
        switch (std::min<int64_t>(kChunkBlocks, in.blocks - chunk * kChunkBlocks)) {
            case 1: sparse_chunk<1, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 2: sparse_chunk<2, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 3: sparse_chunk<3, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 4: sparse_chunk<4, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 5: sparse_chunk<5, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 6: sparse_chunk<6, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 7: sparse_chunk<7, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 8: sparse_chunk<8, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 9: sparse_chunk<9, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 10: sparse_chunk<10, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 11: sparse_chunk<11, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            default: sparse_chunk<kChunkBlocks, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
        }
    }
}

// Subset-sum tables of NB vector blocks of lanes for chunks [c0, c1) of 8 columns: entry e of chunk c
// is the NB vectors at tables + ((c - c0) * 256 + e) * NB * kLanes, built in the scalar reference's order.
template <int NB>
void build_lane_tables(const float* xt, int64_t cols, int64_t c0, int64_t c1, float* tables) {
    constexpr int V = NB * kLanes;
    for (int64_t c = c0; c < c1; ++c) {
        float* t = tables + (c - c0) * 256 * V;
        const int width = int(std::min<int64_t>(8, cols - 8 * c));
        for (int b = 0; b < NB; ++b) _mm256_storeu_ps(t + b * kLanes, _mm256_setzero_ps());
        for (int i = 0; i < width; ++i) {
            __m256 xi[NB];
            for (int b = 0; b < NB; ++b) xi[b] = _mm256_loadu_ps(xt + (b * cols + 8 * c + i) * kLanes);
            const int half = 1 << i;
            for (int k = 0; k < half; ++k)
                for (int b = 0; b < NB; ++b)
                    _mm256_storeu_ps(t + (k | half) * V + b * kLanes,
                                     _mm256_add_ps(_mm256_loadu_ps(t + k * V + b * kLanes), xi[b]));
        }
    }
}

// Batch > 1: NB vector blocks of lanes from block blk0 on, for every row of `bits`. The chunks of 8
// columns are walked in panels whose tables stay in L2; a row's accumulators (accK and accP per
// plane, NB vectors each) live in registers across a panel and in `state` between panels, beside
// its result y. Q = 0: q read at run time (more than 4 planes, NB = 1).
template <int NB, int Q, bool kAligned>
void lut_lanes(const MatmulWeight& w, const BitRows& bits, const MatmulInput& in, int64_t blk0,
               std::vector<float>& scratch) {
    constexpr int V = NB * kLanes;
    constexpr int QM = Q ? Q : kMaxPlanes;
    const int q = Q ? Q : w.q();
    const int64_t rows = bits.r1 - bits.r0, cols = w.cols, chunks = (cols + 7) / 8, groups = w.scales.groups;
    const int64_t group_chunks = groups == 1 ? chunks : w.scales.group_size / 8;
    const int64_t panel = std::max<int64_t>(1, kLutPanelBytes / int64_t(sizeof(float) * 256 * V));
    const int64_t stride = (2 + q) * V;  // per row: accK, accP[q], y
    scratch.assign(size_t(panel * 256 * V + rows * stride), 0.0f);
    float* tables = scratch.data();
    float* state = tables + panel * 256 * V;
    const __m256 two = _mm256_set1_ps(2.0f);
    for (int64_t c0 = 0; c0 < chunks; c0 += panel) {
        const int64_t c1 = std::min(chunks, c0 + panel);
        build_lane_tables<NB>(in.xt + blk0 * cols * kLanes, cols, c0, c1, tables);
        for (int64_t r = 0; r < rows; ++r) {
            float* st = state + r * stride;
            __m256 ak[NB], ap[QM][NB];
            for (int b = 0; b < NB; ++b) {
                ak[b] = _mm256_loadu_ps(st + b * kLanes);
                for (int p = 0; p < q; ++p) ap[p][b] = _mm256_loadu_ps(st + (1 + p) * V + b * kLanes);
            }
            const int64_t row_pos = bits.bit0 + r * cols;
            const RowKeys<kAligned> mask{bits.mask, row_pos};
            RowKeys<kAligned> plane[QM];
            for (int p = 0; p < q; ++p) plane[p] = RowKeys<kAligned>{bits.plane(p), row_pos};
            for (int64_t c = c0; c < c1; ++c) {
                const int width = int(std::min<int64_t>(8, cols - 8 * c));
                const uint32_t m = mask(c, width);
                const float* tc = tables + (c - c0) * 256 * V;
                for (int b = 0; b < NB; ++b) ak[b] = _mm256_add_ps(ak[b], _mm256_loadu_ps(tc + m * V + b * kLanes));
                for (int p = 0; p < q; ++p) {
                    const float* tp = tc + (m & plane[p](c, width)) * V;
                    for (int b = 0; b < NB; ++b) ap[p][b] = _mm256_add_ps(ap[p][b], _mm256_loadu_ps(tp + b * kLanes));
                }
                if ((c + 1) % group_chunks != 0 && c + 1 != chunks) continue;
                // Group complete: y += ((2 accP[p]) - accK) * alpha[p], p ascending; then restart.
                const float* alpha = w.scales.alpha(bits.r0 + r, c / group_chunks);
                const float* beta = w.scales.beta(bits.r0 + r, c / group_chunks);
                for (int b = 0; b < NB; ++b) {
                    __m256 y = _mm256_loadu_ps(st + (1 + q) * V + b * kLanes);
                    for (int p = 0; p < q; ++p) {
                        __m256 t = _mm256_mul_ps(two, ap[p][b]);
                        t = _mm256_sub_ps(t, ak[b]);
                        t = _mm256_mul_ps(t, _mm256_set1_ps(alpha[p]));
                        y = _mm256_add_ps(y, t);
                        ap[p][b] = _mm256_setzero_ps();
                    }
                    if (beta) y = _mm256_add_ps(y, _mm256_mul_ps(ak[b], _mm256_set1_ps(*beta)));
                    _mm256_storeu_ps(st + (1 + q) * V + b * kLanes, y);
                    ak[b] = _mm256_setzero_ps();
                }
            }
            for (int b = 0; b < NB; ++b) {
                _mm256_storeu_ps(st + b * kLanes, ak[b]);
                for (int p = 0; p < q; ++p) _mm256_storeu_ps(st + (1 + p) * V + b * kLanes, ap[p][b]);
            }
        }
    }
    const int64_t lane0 = blk0 * kLanes;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t l = 0; l < V && lane0 + l < in.batch; ++l)
            in.out[(lane0 + l) * w.rows + bits.r0 + r] = state[size_t(r * stride + (1 + q) * V + l)];
}

template <int Q, bool kAligned>
void lut_lanes_q(int nb, const MatmulWeight& w, const BitRows& bits, const MatmulInput& in, int64_t blk0,
                 std::vector<float>& scratch) {
    switch (nb) {
        case 1: return lut_lanes<1, Q, kAligned>(w, bits, in, blk0, scratch);
        case 2: if constexpr (Q != 0) return lut_lanes<2, Q, kAligned>(w, bits, in, blk0, scratch); break;
        case 3: if constexpr (Q != 0 && Q <= 3) return lut_lanes<3, Q, kAligned>(w, bits, in, blk0, scratch); break;
        case 4: if constexpr (Q != 0 && Q <= 2) return lut_lanes<4, Q, kAligned>(w, bits, in, blk0, scratch); break;
        case 5: if constexpr (Q == 1) return lut_lanes<5, Q, kAligned>(w, bits, in, blk0, scratch); break;
        case 6: if constexpr (Q == 1) return lut_lanes<6, Q, kAligned>(w, bits, in, blk0, scratch); break;
        default: break;
    }
    throw std::logic_error("lut kernel: more lane blocks than registers allow");
}

// Batch 1: rows [r, r + R) over chunks [c0, c1), from the shared tables of x (in.tables,
// [chunk][256], built by the driver): R rows at a time give R independent add chains per plane, and
// each row's keys are read in order. Per row, accK, accP[q] and y carry over in `state` between
// panels of chunks. Q = 0: q read at run time.
template <int R, int Q, bool kAligned>
void lut_single(const MatmulWeight& w, const BitRows& bits, int64_t r, const MatmulInput& in, int64_t c0, int64_t c1,
                float* state) {
    constexpr int QM = Q ? Q : kMaxPlanes;
    const int q = Q ? Q : w.q();
    const int64_t cols = w.cols, chunks = (cols + 7) / 8, groups = w.scales.groups;
    const int64_t group_chunks = groups == 1 ? chunks : w.scales.group_size / 8;
    float ak[R], ap[R][QM], y[R];
    for (int i = 0; i < R; ++i) {  // per row: accK, accP[q], y
        const float* st = state + (r + i) * (2 + q);
        ak[i] = st[0];
        for (int p = 0; p < q; ++p) ap[i][p] = st[1 + p];
        y[i] = st[1 + q];
    }
    RowKeys<kAligned> mask[R], plane[R][QM];
    for (int i = 0; i < R; ++i) {
        const int64_t row_pos = bits.bit0 + (r + i) * cols;
        mask[i] = RowKeys<kAligned>{bits.mask, row_pos};
        for (int p = 0; p < q; ++p) plane[i][p] = RowKeys<kAligned>{bits.plane(p), row_pos};
    }
    for (int64_t c = c0; c < c1; ++c) {
        const int width = int(std::min<int64_t>(8, cols - 8 * c));
        const float* t = in.tables + c * 256;
        for (int i = 0; i < R; ++i) {
            const uint32_t m = mask[i](c, width);
            ak[i] = ak[i] + t[m];
            for (int p = 0; p < q; ++p) ap[i][p] = ap[i][p] + t[m & plane[i][p](c, width)];
        }
        if ((c + 1) % group_chunks != 0 && c + 1 != chunks) continue;
        for (int i = 0; i < R; ++i) {  // group complete: y += ((2 accP[p]) - accK) * alpha[p], p ascending
            const float* alpha = w.scales.alpha(bits.r0 + r + i, c / group_chunks);
            for (int p = 0; p < q; ++p) {
                float v = 2.0f * ap[i][p];
                v = v - ak[i];
                v = v * alpha[p];
                y[i] = y[i] + v;
                ap[i][p] = 0.0f;
            }
            if (const float* beta = w.scales.beta(bits.r0 + r + i, c / group_chunks)) y[i] = y[i] + ak[i] * *beta;
            ak[i] = 0.0f;
        }
    }
    for (int i = 0; i < R; ++i) {
        float* st = state + (r + i) * (2 + q);
        st[0] = ak[i];
        for (int p = 0; p < q; ++p) st[1 + p] = ap[i][p];
        st[1 + q] = y[i];
    }
}

template <int R, bool kAligned>
void lut_single_q(const MatmulWeight& w, const BitRows& bits, int64_t r, const MatmulInput& in, int64_t c0, int64_t c1,
                  float* state) {
    switch (w.q()) {
        case 1: return lut_single<R, 1, kAligned>(w, bits, r, in, c0, c1, state);
        case 2: return lut_single<R, 2, kAligned>(w, bits, r, in, c0, c1, state);
        case 3: return lut_single<R, 3, kAligned>(w, bits, r, in, c0, c1, state);
        case 4: return lut_single<R, 4, kAligned>(w, bits, r, in, c0, c1, state);
        default: return lut_single<R, 0, kAligned>(w, bits, r, in, c0, c1, state);
    }
}

// Every row of `bits` for vector blocks [block0, block1) of lanes, keys read as kAligned says.
template <bool kAligned>
void lut_rows(const MatmulWeight& w, const BitRows& bits, const MatmulInput& in, int64_t block0, int64_t block1,
              std::vector<float>& scratch) {
    const int q = w.q();
    const int64_t rows = bits.r1 - bits.r0;
    if (in.batch == 1) {  // panels of chunks whose tables stay in L2
        const int64_t chunks = (w.cols + 7) / 8, panel = kLutPanelBytes / int64_t(sizeof(float) * 256);
        scratch.assign(size_t(rows * (2 + q)), 0.0f);
        for (int64_t c0 = 0; c0 < chunks; c0 += panel) {
            const int64_t c1 = std::min(chunks, c0 + panel);
            int64_t r = 0;
            for (; r + 4 <= rows; r += 4) lut_single_q<4, kAligned>(w, bits, r, in, c0, c1, scratch.data());
            for (; r < rows; ++r) lut_single_q<1, kAligned>(w, bits, r, in, c0, c1, scratch.data());
        }
        for (int64_t r = 0; r < rows; ++r) in.out[bits.r0 + r] = scratch[size_t(r * (2 + q) + 1 + q)];
        return;
    }
    const int most = lut_register_blocks(q);
    for (int64_t blk = block0; blk < block1; blk += most) {
        const int nb = int(std::min<int64_t>(most, block1 - blk));
        switch (q) {
            case 1: lut_lanes_q<1, kAligned>(nb, w, bits, in, blk, scratch); break;
            case 2: lut_lanes_q<2, kAligned>(nb, w, bits, in, blk, scratch); break;
            case 3: lut_lanes_q<3, kAligned>(nb, w, bits, in, blk, scratch); break;
            case 4: lut_lanes_q<4, kAligned>(nb, w, bits, in, blk, scratch); break;
            default: lut_lanes_q<0, kAligned>(nb, w, bits, in, blk, scratch); break;
        }
    }
}

}  // namespace

void lut_rows_avx2(const MatmulWeight& w, const BitRows& bits, const MatmulInput& in, int64_t block0, int64_t block1,
                   std::vector<float>& scratch) {
    if (w.cols % 8 == 0 && bits.bit0 % 8 == 0) return lut_rows<true>(w, bits, in, block0, block1, scratch);
    lut_rows<false>(w, bits, in, block0, block1, scratch);
}

void sparse_rows_avx2(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in) {
    const int q = w.q();
    const int64_t groups = w.scales.groups;
    if (in.batch == 1) {
        alignas(32) float values[256];
        for (int64_t r = r0; r < r1; ++r) {
            float y = 0.0f;
            for (int64_t g = 0; g < groups; ++g) {
                const float* alpha = w.scales.alpha(r, g);
                const int64_t k0 = plan.seg[r * groups + g], k1 = plan.seg[r * groups + g + 1];
                if (sparse_signed_path(w)) {
                    y = y + sparse_signed_sum_wide(plan.entries, k0, k1, in.x_signed, uint32_t(2 * w.cols)) * alpha[0];
                    continue;
                }
                pattern_values(alpha, w.scales.beta(r, g), q, values);
                y = y + sparse_segment_gather(plan, k0, k1, in.x, values);
            }
            in.out[r] = y;
        }
        return;
    }
    if (plan.codes)
        sparse_chunks<false>(w, plan, r0, r1, in);
    else
        sparse_chunks<true>(w, plan, r0, r1, in);
}

}  // namespace sc

#include "plane_codec.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "cpu_dispatch.h"
#include "kernel_table.h"
#include "parallel.h"
#include "slice_solver.h"
#include "trellis_encoder.h"

namespace sc {

namespace {

// Slices per encoding task for depth 1: a multiple of 64 so that tasks write disjoint code words.
int64_t depth1_task_slices(const XorNetwork& net) {
    const int64_t target_bits = 1 << 16;
    return std::max<int64_t>(1, target_bits / net.n_out / 64 + 1) * 64;
}

void encode_depth1_range(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* target,
                         const uint64_t* care, int64_t s0, int64_t s1, uint64_t* code,
                         std::vector<int64_t>& patches, SliceSolver& solver,
                         std::vector<uint64_t>& rows, std::vector<uint8_t>& bits,
                         std::vector<int>& offsets, std::vector<int>& slice_patches) {
    const int n_out = net.n_out;
    for (int64_t t = s0; t < s1; ++t) {
        const int64_t pos = t * n_out;
        rows.clear();
        bits.clear();
        offsets.clear();
        for (int w = 0; w * 64 < n_out; ++w) {
            const int64_t p = pos + 64 * int64_t(w);
            const int64_t avail = std::min<int64_t>(geo.length - p, std::min(64, n_out - 64 * w));
            if (avail <= 0) break;
            const uint64_t cw = read_bits(care, p, int(avail));
            const uint64_t tw = read_bits(target, p, int(avail));
            for (uint64_t c = cw; c; c &= c - 1) {
                const int b = low_bit(c);
                offsets.push_back(64 * w + b);
                rows.push_back(net.rows[size_t(64 * w + b)]);
                bits.push_back(uint8_t((tw >> b) & 1));
            }
        }
        const uint64_t x = solver.solve(rows.data(), bits.data(), int(rows.size()), slice_patches);
        or_bits(code, t * net.n_in, x, net.n_in);
        for (int i : slice_patches) patches.push_back(pos + offsets[size_t(i)]);
    }
}

}  // namespace

void check_geometry(const XorNetwork& net, const PlaneGeometry& geo) {
    if (geo.length < 1 || geo.length > kMaxPlaneLength)
        throw std::invalid_argument("the weight matrix must have between 1 and 2^48 entries");
    if (geo.chain < 64 || geo.chain > kMaxChain || geo.chain % 64 != 0)
        throw std::invalid_argument("chain must be a multiple of 64 between 64 and " + std::to_string(kMaxChain));
    const int64_t states = int64_t(1) << (net.n_in * (net.depth - 1));
    if (net.depth > 1 && geo.chain * states > kMaxTracebackEntries)
        throw std::invalid_argument("chain too long for this n_in and depth: the encoder would keep " +
                                    std::to_string(geo.chain * states) + " traceback entries per thread (at most " +
                                    std::to_string(kMaxTracebackEntries) + "); use a shorter chain");
}

SliceLayout make_layout(const XorNetwork& net, const PlaneGeometry& geo) {
    return SliceLayout(net, geo.length, geo.layout, geo.group_bands, net.seed);
}

namespace {

// Encodes planes already in slice order (plane_len bits each, don't-care past the care bits).
void encode_slice_order(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* targets,
                        const uint64_t* care, int q, uint64_t* code_out,
                        std::vector<std::vector<int64_t>>& patches_out) {
    const int64_t n_slices = geo.slices(net);
    const int64_t task_slices = net.depth == 1 ? depth1_task_slices(net) : geo.chain;
    const int64_t tasks_per_plane = (n_slices + task_slices - 1) / task_slices;
    const int64_t n_tasks = tasks_per_plane * q;
    const int64_t plane_words = geo.plane_words();
    const int64_t code_words = geo.code_words(net);
    std::vector<std::vector<int64_t>> task_patches(static_cast<size_t>(n_tasks));
    ExceptionCollector errors;

    // Per-thread state is created empty here (nothing that can throw) and filled inside the tasks,
    // whose exceptions are collected: every thread must reach the worksharing loop.
#pragma omp parallel num_threads(max_threads())
    {
        SliceSolver solver;
        std::vector<uint64_t> rows;
        std::vector<uint8_t> bits;
        std::vector<int> offsets, slice_patches;
        std::unique_ptr<TrellisEncoder> trellis;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < n_tasks; ++task) errors.run([&] {
            if (net.depth > 1 && !trellis) trellis.reset(new TrellisEncoder(net));
            const int plane = int(task / tasks_per_plane);
            const int64_t s0 = (task % tasks_per_plane) * task_slices;
            const int64_t s1 = std::min(n_slices, s0 + task_slices);
            const uint64_t* target = targets + plane * plane_words;
            uint64_t* code = code_out + plane * code_words;
            std::vector<int64_t>& out = task_patches[size_t(task)];
            if (net.depth == 1) {
                encode_depth1_range(net, geo, target, care, s0, s1, code, out, solver, rows, bits, offsets,
                                    slice_patches);
            } else {
                std::vector<uint64_t> words(size_t(s1 - s0));
                trellis->encode_chain(target, care, geo.length, s0 * net.n_out, s1 - s0, words.data(), out);
                for (int64_t t = s0; t < s1; ++t) or_bits(code, t * net.n_in, words[size_t(t - s0)], net.n_in);
            }
        });
    }
    errors.rethrow();
    patches_out.assign(size_t(q), {});
    for (int64_t task = 0; task < n_tasks; ++task) {
        std::vector<int64_t>& dst = patches_out[size_t(task / tasks_per_plane)];
        const std::vector<int64_t>& src = task_patches[size_t(task)];
        dst.insert(dst.end(), src.begin(), src.end());
    }
}

// Copies the flat bits of a group (zero past the end of the source) into an aligned buffer.
void load_flat_group(const uint64_t* src, int64_t src_words, const SliceGroup& g, uint64_t* dst) {
    const int64_t words = (g.positions + 63) / 64, first = g.first_pos / 64;
    for (int64_t w = 0; w < words; ++w) dst[w] = first + w < src_words ? src[first + w] : 0;
}

}  // namespace

void encode_planes(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* targets,
                   const uint64_t* care, int q, uint64_t* code_out,
                   std::vector<std::vector<int64_t>>& patches_out) {
    check_geometry(net, geo);
    const SliceLayout layout = make_layout(net, geo);
    if (layout.identity()) return encode_slice_order(net, geo, targets, care, q, code_out, patches_out);

    // Scatter layout: move targets and care bits into slice order, encode, map patches back.
    PlaneGeometry padded = geo;
    padded.length = layout.padded_length();
    const int64_t src_words = geo.plane_words(), words = padded.plane_words();
    std::vector<uint64_t> slice_care(size_t(words), 0), slice_targets(size_t(words) * q, 0);
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        std::vector<uint64_t> flat;
#pragma omp for schedule(static)
        for (int64_t g = 0; g < layout.group_count(); ++g) errors.run([&] {
            const SliceGroup& group = layout.group(g);
            flat.resize(size_t((group.positions + 63) / 64));
            for (int plane = -1; plane < q; ++plane) {
                const uint64_t* src = plane < 0 ? care : targets + plane * src_words;
                uint64_t* dst = (plane < 0 ? slice_care.data() : slice_targets.data() + plane * words) + group.first_pos / 64;
                load_flat_group(src, src_words, group, flat.data());
                layout.to_slice(group, flat.data(), dst);
            }
        });
    }
    errors.rethrow();
    encode_slice_order(net, padded, slice_targets.data(), slice_care.data(), q, code_out, patches_out);
    for (std::vector<int64_t>& plane : patches_out) {
        for (int64_t& p : plane) p = layout.flat_position(p);
        std::sort(plane.begin(), plane.end());
    }
}

void decode_slices_scalar(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t s0,
                          int64_t s1, uint64_t* out) {
    uint64_t y[kMaxNOut / 64];
    const int n_out = net.n_out;
    WindowCursor cursor(net, geo, code, s0);
    for (int64_t t = s0; t < s1; ++t) {
        if (t > s0) cursor.advance();  // never reads the word after the last slice
        net.decode_window(cursor.window(), y);
        const int64_t base = (t - s0) * n_out;
        for (int w = 0; w < net.out_words; ++w)
            or_bits(out, base + 64 * int64_t(w), y[w], std::min(64, n_out - 64 * w));
    }
}

void decode_slices(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t s0,
                   int64_t s1, uint64_t* out) {
    kernels().decode_slices(net, geo, code, s0, s1, out);
}

namespace {

// Output word j = XOR over the 4-bit groups g of table g at nibble g of row j (G groups, unrolled).
template <int G>
void band_outputs(const uint64_t* x, const XorNetwork& net, uint64_t* out) {
    uint64_t tables[G * 16];
    for (int g = 0; g < G; ++g) {
        uint64_t* t = tables + 16 * g;
        t[0] = 0;
        for (int i = 0; i < 4; ++i) {
            const uint64_t col = 4 * g + i < net.window ? x[4 * g + i] : 0;
            for (int v = 0; v < (1 << i); ++v) t[v | (1 << i)] = t[v] ^ col;
        }
    }
    const uint16_t* offsets = net.nibble_offsets.data();
    for (int j = 0; j < net.n_out; ++j, offsets += G) {
        uint64_t y = tables[offsets[0]];
        for (int g = 1; g < G; ++g) y ^= tables[offsets[g]];
        out[j] = y;
    }
}

}  // namespace

void decode_band(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t0, int slices,
                 uint64_t* out) {
    const Kernels& k = kernels();
    if (slices == 64 && k.band_direct(net, geo, code, t0, out)) return;
    uint64_t x[64];
    const bool fast = slices == 64 && k.band_inputs(net, geo, code, t0, x);
    if (!fast) {
        std::fill(x, x + 64, uint64_t(0));
        WindowCursor cursor(net, geo, code, t0);
        for (int s = 0; s < slices; ++s) {
            if (s) cursor.advance();  // never reads past the last of the slices
            x[s] = cursor.window();
        }
        transpose64(x);  // x[c]: bit c of the windows
    }
    k.band_outputs(x, net, out);
}

void band_outputs_scalar(const uint64_t* x, const XorNetwork& net, uint64_t* out) {
    switch (net.nibble_groups) {
#define SC_BAND_CASE(G) \
    case G: return band_outputs<G>(x, net, out);
        SC_BAND_CASE(1) SC_BAND_CASE(2) SC_BAND_CASE(3) SC_BAND_CASE(4) SC_BAND_CASE(5) SC_BAND_CASE(6)
        SC_BAND_CASE(7) SC_BAND_CASE(8) SC_BAND_CASE(9) SC_BAND_CASE(10) SC_BAND_CASE(11) SC_BAND_CASE(12)
        SC_BAND_CASE(13) SC_BAND_CASE(14) SC_BAND_CASE(15) SC_BAND_CASE(16)
#undef SC_BAND_CASE
    }
}

void decode_group(const XorNetwork& net, const PlaneGeometry& geo, const SliceLayout& layout,
                  const SliceGroup& group, const uint64_t* code, std::vector<uint64_t>& band_buf,
                  std::vector<uint64_t>& flat) {
    const size_t words = size_t((group.positions + 63) / 64 + 2);
    if (group.placement == Placement::scattered) {
        flat.resize(words);  // every word of a scattered group is written by place_band
        flat[words - 2] = flat[words - 1] = 0;
    } else {
        flat.assign(words, 0);
    }
    if (group.placement == Placement::linear) {
        decode_slices(net, geo, code, group.first_slice, group.first_slice + group.slices, flat.data());
        return;
    }
    // Scattered groups and the interleaved tail: each band decodes bit-sliced straight into the
    // words the layout places.
    band_buf.resize(size_t(net.n_out));
    for (int64_t first = 0; first < group.slices; first += 64) {
        const int n = int(std::min<int64_t>(64, group.slices - first));
        decode_band(net, geo, code, group.first_slice + first, n, band_buf.data());
        layout.place_band(group, first / 64, band_buf.data(), flat.data());
    }
}

void decode_planes(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int q,
                   const std::vector<PatchList>& patches, uint64_t* out) {
    const SliceLayout layout = make_layout(net, geo);
    const int64_t groups = layout.group_count();
    const int64_t plane_words = geo.plane_words();
    const int64_t code_words = geo.code_words(net);
    std::fill(out, out + q * plane_words, uint64_t(0));
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        std::vector<uint64_t> band_buf, flat;
#pragma omp for schedule(static)
        for (int64_t task = 0; task < groups * q; ++task) errors.run([&] {
            const int plane = int(task / groups);
            const SliceGroup& group = layout.group(task % groups);
            decode_group(net, geo, layout, group, code + plane * code_words, band_buf, flat);
            const int64_t bits = std::min(geo.length, group.first_pos + group.positions) - group.first_pos;
            uint64_t* dst = out + plane * plane_words + group.first_pos / 64;  // groups start on word boundaries
            const int64_t full = bits / 64;
            for (int64_t w = 0; w < full; ++w) dst[w] = flat[size_t(w)];
            if (bits % 64) dst[full] = flat[size_t(full)] & low_mask(int(bits % 64));
        });
    }
    errors.rethrow();
    for (int plane = 0; plane < q; ++plane)
        patches[size_t(plane)].for_each_in(0, geo.length, [&](int64_t pos) { flip_bit(out + plane * plane_words, pos); });
}

}  // namespace sc

#include "plane_codec.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "cpu_dispatch.h"
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

void encode_planes(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* targets,
                   const uint64_t* care, int q, uint64_t* code_out,
                   std::vector<std::vector<int64_t>>& patches_out) {
    const int64_t n_slices = geo.slices(net);
    const int64_t task_slices = net.depth == 1 ? depth1_task_slices(net) : geo.chain;
    check_geometry(net, geo);
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
#ifdef SPARSECODEC_HAS_AVX2
    if (use_avx2()) return decode_slices_avx2(net, geo, code, s0, s1, out);
#endif
    decode_slices_scalar(net, geo, code, s0, s1, out);
}

void decode_planes(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int q,
                   const std::vector<const int64_t*>& patches, const std::vector<int64_t>& patch_counts,
                   uint64_t* out) {
    const int64_t n_slices = geo.slices(net);
    const int64_t chunk = 64;  // 64 slices start on a word boundary of the output
    const int64_t chunks = (n_slices + chunk - 1) / chunk;
    const int64_t plane_words = geo.plane_words();
    const int64_t code_words = geo.code_words(net);
    std::fill(out, out + q * plane_words, uint64_t(0));
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        std::vector<uint64_t> buf;
#pragma omp for schedule(static)
        for (int64_t task = 0; task < chunks * q; ++task) errors.run([&] {
            const int plane = int(task / chunks);
            const int64_t s0 = (task % chunks) * chunk, s1 = std::min(n_slices, s0 + chunk);
            const int64_t first = s0 * net.n_out;
            const int64_t bits = std::min(geo.length, s1 * net.n_out) - first;
            buf.assign(size_t((s1 - s0) * net.n_out / 64 + 2), 0);
            decode_slices(net, geo, code + plane * code_words, s0, s1, buf.data());
            uint64_t* dst = out + plane * plane_words + first / 64;
            const int64_t full = bits / 64;
            for (int64_t w = 0; w < full; ++w) dst[w] = buf[size_t(w)];
            if (bits % 64) dst[full] = buf[size_t(full)] & low_mask(int(bits % 64));
        });
    }
    errors.rethrow();
    for (int plane = 0; plane < q; ++plane)
        for (int64_t i = 0; i < patch_counts[size_t(plane)]; ++i) flip_bit(out + plane * plane_words, patches[size_t(plane)][i]);
}

}  // namespace sc

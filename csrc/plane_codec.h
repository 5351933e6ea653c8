// Encoding and decoding of whole bit-planes with the XOR network.
//
// A plane of `length` bits (the flattened weight matrix) is cut into slices of n_out bits, placed
// by the slice layout (slice_layout.h); slice t is stored as an n_in-bit word at bit t*n_in of the
// plane's code stream. For depth >= 2 the slices are grouped in chains of `chain` slices (a multiple
// of 64): the shift register restarts from zero at each chain, which lets chains be encoded in
// parallel. Patches are flat bit positions whose decoded value must be flipped.
#pragma once

#include <cstdint>
#include <vector>

#include "patch_list.h"
#include "slice_layout.h"
#include "xor_network.h"

namespace sc {

constexpr int64_t kMaxPlaneLength = int64_t(1) << 48;
constexpr int64_t kMaxChain = int64_t(1) << 20;
constexpr int64_t kMaxTracebackEntries = int64_t(1) << 26;  // DP backpointers per encoding thread

struct PlaneGeometry {
    int64_t length;  // bits per plane (rows * cols)
    int64_t chain;   // slices per shift-register chain (ignored for depth 1)
    LayoutKind layout = LayoutKind::linear;
    int group_bands = 1;  // bands of 64 slices per group (a format parameter of the scatter layout)
    int64_t slices(const XorNetwork& net) const { return (length + net.n_out - 1) / net.n_out; }
    int64_t code_words(const XorNetwork& net) const { return (slices(net) * net.n_in + 63) / 64; }
    int64_t plane_words() const { return (length + 63) / 64; }
};

// Throws std::invalid_argument when the plane length or chain length is unsupported (including a
// chain whose DP traceback would need more than kMaxTracebackEntries entries per thread).
void check_geometry(const XorNetwork& net, const PlaneGeometry& geo);

// Encodes q planes. targets: q * plane_words words; care: plane_words words (the keep-mask).
// code_out: q * code_words words, zero-filled by the caller. patches_out[i]: ascending positions.
void encode_planes(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* targets,
                   const uint64_t* care, int q, uint64_t* code_out,
                   std::vector<std::vector<int64_t>>& patches_out);

// Decodes slices [s0, s1) of one plane (patches not applied) into out, starting at bit 0.
// out must hold ceil((s1 - s0) * n_out / 64) + 1 zeroed words.
void decode_slices(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t s0,
                   int64_t s1, uint64_t* out);
void decode_slices_scalar(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code,
                          int64_t s0, int64_t s1, uint64_t* out);
#ifdef SPARSECODEC_HAS_AVX2
void decode_slices_avx2(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code,
                        int64_t s0, int64_t s1, uint64_t* out);
#endif

// The groups a plane is processed in (the scatter layout's groups; cache-sized pieces otherwise).
SliceLayout make_layout(const XorNetwork& net, const PlaneGeometry& geo);

// Decodes the slices of one group into its flat bits (bit 0 = the group's first position), resizing
// flat to ceil(group.positions / 64) + 2 words; band_buf is scratch.
void decode_group(const XorNetwork& net, const PlaneGeometry& geo, const SliceLayout& layout,
                  const SliceGroup& group, const uint64_t* code, std::vector<uint64_t>& band_buf,
                  std::vector<uint64_t>& flat);

// Decodes the slices t0 .. t0+slices-1 (slices <= 64) bit-sliced: out[j] (j < n_out) receives bit j
// of every slice, slice s at bit s (zero above `slices`). The windows are transposed once, and each
// output word is the XOR of the input bit-words selected by row j of the network, read through
// 4-bit lookup tables; a full band goes first to the level's band_direct kernel (AVX-512: networks
// of 8 stored bits per slice).
void decode_band(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t0, int slices,
                 uint64_t* out);

// decode_band's outputs from its transposed windows x (out[j] = XOR over the nibble groups g of the
// XOR of the x[4g + i] selected by nibble g of row j).
void band_outputs_scalar(const uint64_t* x, const XorNetwork& net, uint64_t* out);
#ifdef SPARSECODEC_HAS_AVX2
// The same with byte-plane tables and vpshufb, 32 output words at a time (identical results).
void band_outputs_avx2(const uint64_t* x, const XorNetwork& net, uint64_t* out);

// decode_band's inputs (x[c] = bit c of the windows of slices t0 .. t0+63) by parallel-bit-extract
// for a full band when n_in divides 64 and is at most 16; returns false (x untouched) otherwise.
// Equal to transposing the 64 windows, which is the reference.
bool band_inputs_bmi2(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t0, uint64_t* x);
#endif
#ifdef SPARSECODEC_HAS_AVX512
// decode_slices for square 64-bit networks of depth 1 with GF2P8AFFINEQB, 64 slices at a time
// (others, and the last slices, go to decode_slices_avx2); identical results.
void decode_slices_avx512(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code,
                          int64_t s0, int64_t s1, uint64_t* out);
// decode_band's outputs for a full band (t0 a multiple of 64) when n_in = 8, straight from the code
// bytes with GF2P8AFFINEQB; returns false (out untouched) for other networks. Identical to
// band_inputs + band_outputs, the reference.
bool band_direct_avx512(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t0,
                        uint64_t* out);
#endif

// Decodes q whole planes with patches applied: out is q * plane_words words.
void decode_planes(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int q,
                   const std::vector<PatchList>& patches, uint64_t* out);

// The stored word window of slice t: x_t | x_{t-1} << n_in | ..., zero before the chain start.
inline uint64_t slice_window(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code,
                             int64_t t);

// Walks the windows of consecutive slices, shifting in one stored word per slice.
class WindowCursor {
public:
    WindowCursor(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t);
    uint64_t window() const { return window_; }
    void advance();

private:
    const uint64_t* code_;
    int n_in_, depth_;
    int64_t t_, chain_, next_chain_;
    uint64_t window_, mask_;
};

}  // namespace sc

#include "bitops.h"

namespace sc {
inline uint64_t slice_window(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code,
                             int64_t t) {
    uint64_t win = read_bits(code, t * net.n_in, net.n_in);
    if (net.depth > 1) {
        const int64_t chain_start = (t / geo.chain) * geo.chain;
        for (int lag = 1; lag < net.depth && t - lag >= chain_start; ++lag)
            win |= read_bits(code, (t - lag) * net.n_in, net.n_in) << (net.n_in * lag);
    }
    return win;
}

inline WindowCursor::WindowCursor(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code,
                                  int64_t t)
    : code_(code),
      n_in_(net.n_in),
      depth_(net.depth),
      t_(t),
      chain_(geo.chain),
      next_chain_((t / geo.chain + 1) * geo.chain),
      window_(slice_window(net, geo, code, t)),
      mask_(low_mask(net.n_in * net.depth)) {}

inline void WindowCursor::advance() {
    ++t_;
    const uint64_t x = read_bits(code_, t_ * n_in_, n_in_);
    if (depth_ == 1) {
        window_ = x;
        return;
    }
    if (t_ == next_chain_) {
        window_ = 0;  // the shift register restarts at every chain
        next_chain_ += chain_;
    }
    window_ = ((window_ << n_in_) | x) & mask_;  // n_in * depth <= 20 here, so the shift is defined
}
}  // namespace sc

"""The demo behind ``python -m sparsecodec demo``: compress one large pruned layer and report.

It prunes a 4096 x 4096 Gaussian layer by magnitude, quantises it to 2-bit BCQ, XOR-encodes it,
checks that decoding reproduces the quantised weights bit for bit, and prints what it costs in bits
per weight against dense float32, CSR and the entropy bound, with encode and decode speed.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from .bcq import bcq_dequantize, bcq_quantize
from .info import build_info
from .xor_codec import decode, encode


def _best_of(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_demo(
    rows: int = 4096,
    cols: int = 4096,
    seed: int = 0,
    sparsity: float = 0.9,
    bits: int = 2,
    out_dir: str = "sparsecodec-demo",
) -> int:
    info = build_info()
    print(f"sparsecodec {info['version']} | SIMD {info.get('simd_active')} | threads {info.get('threads')}")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    print(f"layer {rows} x {cols} ({w.nbytes / 2**20:.0f} MiB as float32), sparsity {sparsity}, {bits}-bit BCQ\n")

    t0 = time.perf_counter()
    enc = encode(w, sparsity=sparsity, bits=bits)
    t_encode = time.perf_counter() - t0
    mask = enc.mask.to_dense()
    quant = bcq_quantize(w, mask, bits)
    reference = bcq_dequantize(quant.scales, quant.planes, mask, quant.group_size)
    decoded = decode(enc)
    exact = bool(np.array_equal(decoded.view(np.uint32), reference.view(np.uint32)))

    s = enc.stats
    kept = s["kept"]
    csr_bits = kept * (32 + 32) + (rows + 1) * 32  # float32 values + int32 columns + row pointers
    print(f"{'component':<22}{'bits/weight':>12}")
    for key, label in [
        ("values_bpw", "XOR-coded planes"),
        ("patch_bpw", "patches"),
        ("mask_bpw", "mask (bitmap)"),
        ("scale_bpw", "scales"),
        ("total_bpw", "total"),
    ]:
        print(f"{label:<22}{s[key]:>12.4f}")
    print(f"{'entropy bound q(1-S)':<22}{s['bound_bpw']:>12.4f}")
    print(f"\nencoding efficiency E = {s['efficiency']:.3f} (1.0 = entropy limit), {s['patches']} patches")
    print(f"quantisation error of kept weights: relative {s['quant_relative_error']:.4f}")
    vs_csr = csr_bits / (s["total_bpw"] * w.size)
    print(f"size vs dense float32: {32 / s['total_bpw']:.1f}x smaller; vs CSR float32: {vs_csr:.1f}x smaller")
    print(f"decode reproduces the quantised weights bit for bit: {'yes' if exact else 'NO'}")

    t_decode = _best_of(lambda: decode(enc))
    t_copy = _best_of(lambda: w.copy())
    print(f"\nencode: {t_encode:.2f} s ({w.size * bits / t_encode / 1e6:.1f} M plane-weights/s, incl. pruning and BCQ)")
    print(
        f"decode to dense float32: {w.size / t_decode / 1e9:.2f} G weights/s "
        f"({t_copy / t_decode:.2f}x the speed of a numpy copy of the dense layer)"
    )

    path = pathlib.Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    target = path / "layer.spcx"
    target.write_bytes(enc.to_bytes())
    print(f"\nwrote {target.resolve()} ({target.stat().st_size / 2**20:.2f} MiB)")
    return 0 if exact else 1

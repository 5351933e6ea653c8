"""Post-training compression by the PyPI libraries people use, run on all-MiniLM-L6-v2 on CPU.

``bench/real_model.py`` calls, for every name of :func:`peer_names`, ``run_peer(name, model, batches)``
with the dense ``transformers.BertModel`` and the tokenised calibration batches; the result is a
:class:`PeerResult`: a compressed deep copy of the model (the input is never modified) that runs
``model(**batch)`` on CPU, or ``None`` with the reason in ``note``.

Every peer quantises the ``nn.Linear`` layers only (the 36 encoder Linears and the pooler), its
default behaviour; the embeddings and LayerNorms stay float32. The peers:

* torchao 0.18 int8 weight-only (``Int8WeightOnlyConfig``: int8 per output row, symmetric) and int4
  weight-only group 128 (``PrototypeInt4WeightOnlyConfig``, the CPU tinygemm kernel: asymmetric,
  scale and zero in the model dtype, float32 here). ``Int4WeightOnlyConfig`` has no CPU packing
  format in 0.18: plain and preshuffled need the ``mslk`` package, plain_int32 is XPU only and
  tile_packed_to_4d CUDA only.
* HQQ 0.2.8 (``HQQLinear``, half-quadratic optimised zero and scale, no calibration data): 4-bit
  group 64, 3-bit group 64, 2-bit group 32; scale and zero are computed in float16 (HQQ's compute
  and storage dtype; not quantised further, HQQ 0.2.8 ignores that option) and upcast to float32 for
  the CPU forward.
* optimum-quanto 0.2.7 (``quantize`` + ``freeze``): qint8 (per row, symmetric) and qint4 (group 128,
  asymmetric, float32 scale and shift).
* bitsandbytes 0.50.2 on its CPU backend: NF4 blocksize 64 with double-quantised absmax
  (``Linear4bit``), and LLM.int8 (``Linear8bitLt``, threshold 6).
* llmcompressor (GPTQ W4A16 group 128; SparseGPT 50 % unstructured; SparseGPT 50 % then GPTQ W4A16),
  calibrated on the same batches, in a subprocess (``bench/peer_llmcompressor.py``) under another
  Python: llmcompressor pins torch and transformers versions that conflict with the main
  environment. Set ``SPARSECODEC_PEER_PYTHON=/path/to/venv/bin/python`` (a venv with llmcompressor);
  without it the current interpreter is used if it imports llmcompressor, else these peers are
  reported as not run. The subprocess writes the weights as the compressed model computes with them
  (dequantised, float32), which are loaded into a copy of the model.

Bits per weight (``bits_per_weight_linear``) are measured, not quoted: for every Linear, the bits of
every tensor the library keeps for that weight in its stored format (quantised codes with their
packing and padding, scales, zero points or shifts, absmax and codebooks, row scales, shape
tensors; the bias excluded), averaged over the Linear weights (weighted by
size; a Linear a peer leaves alone counts 32). For llmcompressor it is the safetensors checkpoint
it writes with ``save_compressed=True``: pack-quantized int4 with float32 group scales; a pruned,
unquantised model is written dense float32 (compressed-tensors 0.19 no longer writes sparse
formats), so SparseGPT 50 % alone counts 32 bits. ``seconds`` is the wall time of quantisation and
calibration only (for llmcompressor the ``oneshot`` call, not the subprocess start-up).

``python bench/peer_compressors.py [--peers SUBSTRING ...]`` prints a table: cosine on 64 held-out
prose sentences, bits per weight, seconds, note.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: environment variable naming a Python interpreter that imports llmcompressor.
PEER_PYTHON_ENV = "SPARSECODEC_PEER_PYTHON"
#: the most the llmcompressor subprocess may take, seconds.
SUBPROCESS_TIMEOUT = 900
LLMCOMPRESSOR_SCRIPT = pathlib.Path(__file__).with_name("peer_llmcompressor.py")


@dataclass(frozen=True)
class PeerResult:
    name: str
    model: Any | None
    bits_per_weight_linear: float | None
    seconds: float | None
    note: str


# --- helpers -------------------------------------------------------------------------------------
def _linears(model) -> dict[str, Any]:
    import torch

    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _replace(model, name: str, module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _tensor_bits(t) -> int:
    """Storage bits of a tensor; a tensor subclass (torchao, quanto) is the sum of its inner tensors."""
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_bits(getattr(t, n)) for n in names if getattr(t, n, None) is not None)
    return t.numel() * t.element_size() * 8


def _average_bits(dense, stored: dict[str, float]) -> float:
    """Bits per weight over the Linear layers of ``dense``: ``stored`` maps a layer name to the bits
    of its stored weight; a layer not in it counts 32 bits per weight."""
    sizes = {n: m.weight.numel() for n, m in _linears(dense).items()}
    return sum(stored.get(n, 32.0 * size) for n, size in sizes.items()) / sum(sizes.values())


def _not_run(name: str, note: str) -> PeerResult:
    return PeerResult(name, None, None, None, note)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# --- torchao -------------------------------------------------------------------------------------
def _torchao(model, config, label: str, note: str) -> PeerResult:
    from torchao.quantization import quantize_

    out = copy.deepcopy(model)
    _, seconds = _timed(lambda: quantize_(out, config))
    stored = {n: _tensor_bits(m.weight) for n, m in _linears(out).items() if hasattr(m.weight, "__tensor_flatten__")}
    return PeerResult(label, out, _average_bits(model, stored), seconds, note)


def torchao_int8(model, batches) -> PeerResult:
    from torchao.quantization import Int8WeightOnlyConfig

    note = "Int8WeightOnlyConfig(): int8 per row symmetric; counted int8 codes + fp32 row scale + int8 zero point"
    return _torchao(model, Int8WeightOnlyConfig(set_inductor_config=False), "torchao int8 weight-only", note)


def torchao_int4(model, batches) -> PeerResult:
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

    note = (
        "PrototypeInt4WeightOnlyConfig(group_size=128): Int4OpaqueTensor for the CPU tinygemm kernel "
        "(Int4WeightOnlyConfig has no CPU packing in torchao 0.18); counted packed int4 + fp32 scale and zero "
        "per group (the model dtype)"
    )
    config = PrototypeInt4WeightOnlyConfig(group_size=128, set_inductor_config=False)
    return _torchao(model, config, "torchao int4 weight-only g128", note)


# --- HQQ -----------------------------------------------------------------------------------------
def _hqq(model, nbits: int, group: int) -> PeerResult:
    import torch
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    out = copy.deepcopy(model)
    config = BaseQuantizeConfig(nbits=nbits, group_size=group)
    stored = {}
    t0 = time.perf_counter()
    for name, linear in _linears(out).items():
        layer = HQQLinear(linear, config, compute_dtype=torch.float16, device="cpu")
        meta = layer.meta
        stored[name] = _tensor_bits(layer.W_q) + _tensor_bits(meta["scale"]) + _tensor_bits(meta["zero"])
        # The values stay those of the float16 format; the forward runs in float32 on CPU.
        layer.compute_dtype = meta["compute_dtype"] = torch.float32
        meta["scale"], meta["zero"] = meta["scale"].float(), meta["zero"].float()
        if layer.bias is not None:
            layer.bias = layer.bias.float()
        _replace(out, name, layer)
    seconds = time.perf_counter() - t0
    note = (
        f"HQQLinear(BaseQuantizeConfig(nbits={nbits}, group_size={group})), axis 1, no calibration data; "
        f"counted {'int32-packed 3-bit (10 per word)' if nbits == 3 else f'uint8-packed {nbits}-bit'} codes "
        "+ fp16 scale and zero per group"
    )
    return PeerResult(f"HQQ {nbits}-bit g{group}", out, _average_bits(model, stored), seconds, note)


def hqq_4bit(model, batches) -> PeerResult:
    return _hqq(model, 4, 64)


def hqq_3bit(model, batches) -> PeerResult:
    return _hqq(model, 3, 64)


def hqq_2bit(model, batches) -> PeerResult:
    return _hqq(model, 2, 32)


# --- optimum-quanto ------------------------------------------------------------------------------
def _outside_inference_mode(module) -> None:
    """quanto's packed qint4 weight raises "Cannot set version_counter for inference tensor" under
    ``torch.inference_mode`` (which sentence_embeddings uses): run this module's forward outside it."""
    import torch

    forward = module.forward

    def run(self, x):
        with torch.inference_mode(False), torch.no_grad():
            return forward(x.clone())

    module.forward = types.MethodType(run, module)


def _quanto(model, qtype_name: str) -> PeerResult:
    import optimum.quanto as quanto

    out = copy.deepcopy(model)
    qtype = getattr(quanto, qtype_name)

    def quantise():
        quanto.quantize(out, weights=qtype)
        quanto.freeze(out)

    _, seconds = _timed(quantise)
    stored = {}
    for name, module in out.named_modules():
        if isinstance(module, quanto.QLinear):
            stored[name] = _tensor_bits(module.weight)
            _outside_inference_mode(module)
    if qtype_name == "qint8":
        note = "quantize(weights=qint8) + freeze: int8 per row symmetric; counted int8 codes + fp32 row scale"
    else:
        note = (
            f"quantize(weights={qtype_name}) + freeze: group 128 asymmetric; counted uint8-packed codes + "
            "fp32 scale and shift per group; forward run outside inference_mode (quanto raises inside it)"
        )
    return PeerResult(f"quanto {qtype_name}", out, _average_bits(model, stored), seconds, note)


def quanto_int8(model, batches) -> PeerResult:
    return _quanto(model, "qint8")


def quanto_int4(model, batches) -> PeerResult:
    return _quanto(model, "qint4")


# --- bitsandbytes --------------------------------------------------------------------------------
def _bnb_nf4_layer(linear, blocksize: int):
    import bitsandbytes as bnb
    import torch

    layer = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=torch.float32,
        quant_type="nf4",
        compress_statistics=True,
    )
    layer.weight = bnb.nn.Params4bit(
        linear.weight.data.clone(), requires_grad=False, quant_type="nf4", blocksize=blocksize, compress_statistics=True
    )
    if linear.bias is not None:
        layer.bias = torch.nn.Parameter(linear.bias.data.clone(), requires_grad=False)
    layer = layer.to("cpu")  # quantises the weight
    state = layer.weight.quant_state.as_dict(packed=False)
    bits = _tensor_bits(layer.weight.data) + sum(_tensor_bits(v) for v in state.values() if isinstance(v, torch.Tensor))
    return layer, bits


def _bnb_int8_layer(linear):
    import bitsandbytes as bnb
    import torch

    layer = bnb.nn.Linear8bitLt(
        linear.in_features, linear.out_features, bias=linear.bias is not None, has_fp16_weights=False, threshold=6.0
    )
    layer.weight = bnb.nn.Int8Params(linear.weight.data.clone(), requires_grad=False, has_fp16_weights=False)
    if linear.bias is not None:
        layer.bias = torch.nn.Parameter(linear.bias.data.clone(), requires_grad=False)
    layer = layer.to("cpu")  # quantises the weight: int8 codes CB and a float32 scale SCB per row
    return layer, _tensor_bits(layer.weight.data) + _tensor_bits(layer.weight.SCB)


def _bnb(model, label: str, make, note: str) -> PeerResult:
    out = copy.deepcopy(model)
    stored = {}
    t0 = time.perf_counter()
    for name, linear in _linears(out).items():
        layer, stored[name] = make(linear)
        _replace(out, name, layer)
    return PeerResult(label, out, _average_bits(model, stored), time.perf_counter() - t0, note)


def bnb_nf4(model, batches) -> PeerResult:
    note = (
        "Linear4bit(quant_type=nf4, blocksize 64, compress_statistics=True), CPU backend, fp32 compute; "
        "counted packed nf4 + uint8 absmax per 64 + fp32 absmax per 256 blocks + both codebooks"
    )
    return _bnb(model, "bitsandbytes nf4 b64", lambda lin: _bnb_nf4_layer(lin, 64), note)


def bnb_int8(model, batches) -> PeerResult:
    note = "Linear8bitLt(has_fp16_weights=False, threshold=6.0), CPU backend; counted int8 codes + fp32 row scale"
    return _bnb(model, "bitsandbytes LLM.int8", _bnb_int8_layer, note)


# --- llmcompressor (subprocess) ------------------------------------------------------------------
def peer_python() -> str | None:
    """The interpreter for llmcompressor: ``$SPARSECODEC_PEER_PYTHON``, else this one if it imports
    llmcompressor, else None."""
    env = os.environ.get(PEER_PYTHON_ENV)
    if env:
        return env
    if importlib.util.find_spec("llmcompressor") is not None:
        return sys.executable
    return None


def _calibration_sequences(batches) -> list[dict]:
    """The calibration sentences as token lists with the padding removed."""
    sequences = []
    for batch in batches:
        mask = batch["attention_mask"].bool()
        types_ = batch.get("token_type_ids")
        for i in range(mask.shape[0]):
            keep = mask[i]
            row = {"input_ids": batch["input_ids"][i][keep].tolist()}
            if types_ is not None:
                row["token_type_ids"] = types_[i][keep].tolist()
            sequences.append(row)
    return sequences


def _llmcompressor(model, batches, recipe: str, label: str) -> PeerResult:
    from safetensors.torch import load_file

    python = peer_python()
    if python is None:
        note = f"llmcompressor is not importable here and {PEER_PYTHON_ENV} is unset (point it at a venv's python)"
        return _not_run(label, note)
    with tempfile.TemporaryDirectory(prefix="peer_llmc_") as tmp:
        tmp_path = pathlib.Path(tmp)
        model.save_pretrained(str(tmp_path / "model"))
        job = {
            "model_dir": str(tmp_path / "model"),
            "recipe": recipe,
            "sequences": _calibration_sequences(batches),
            "out_dir": str(tmp_path),
        }
        (tmp_path / "job.json").write_text(json.dumps(job))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["TOKENIZERS_PARALLELISM"] = "false"
        log = tmp_path / "log.txt"
        try:
            with open(log, "w") as fh:
                subprocess.run(
                    [python, str(LLMCOMPRESSOR_SCRIPT), str(tmp_path / "job.json")],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=SUBPROCESS_TIMEOUT,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            return _not_run(label, f"llmcompressor subprocess timed out after {SUBPROCESS_TIMEOUT} s")
        result_file = tmp_path / "result.json"
        if not result_file.is_file():
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
            return _not_run(label, f"llmcompressor subprocess failed: {' '.join(tail)[:300]}")
        result = json.loads(result_file.read_text())
        if result["error"]:
            return _not_run(label, f"llmcompressor {result['config']} failed: {result['error']}")
        weights = load_file(str(tmp_path / "weights.safetensors"))
    out = copy.deepcopy(model)
    expected = {f"{n}.weight" for n in _linears(out)}
    if set(weights) != expected:
        return _not_run(label, "llmcompressor returned weights that do not match the model's Linears")
    out.load_state_dict(weights, strict=False)
    sizes = {n: m.weight.numel() for n, m in _linears(model).items()}
    stored = {n: b * sizes[n] for n, b in result["bits"].items()}
    note = (
        f"{result['config']}, oneshot on CPU on the same calibration tokens (unpadded); counted every tensor "
        f"of the save_compressed checkpoint ({result['format']}) but the bias"
    )
    if "sparsegpt" in recipe:
        zeros = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
        note += (
            f"; {100 * zeros:.1f} % of the Linear weights are zero, stored as ordinary values "
            "(compressed-tensors no longer writes sparse formats)"
        )
    if recipe == "sparsegpt50_gptq_w4a16":
        note += "; llmcompressor's GPTQ does not keep the SparseGPT mask"
    return PeerResult(label, out, _average_bits(model, stored), result["seconds"], note)


def llmc_gptq_w4a16(model, batches) -> PeerResult:
    return _llmcompressor(model, batches, "gptq_w4a16", "llmcompressor GPTQ W4A16 g128")


def llmc_sparsegpt50(model, batches) -> PeerResult:
    return _llmcompressor(model, batches, "sparsegpt50", "llmcompressor SparseGPT 50 %")


def llmc_sparsegpt50_w4a16(model, batches) -> PeerResult:
    return _llmcompressor(model, batches, "sparsegpt50_gptq_w4a16", "llmcompressor SparseGPT 50 % + GPTQ W4A16")


# --- registry ------------------------------------------------------------------------------------
PEERS: dict[str, Callable[[Any, list], PeerResult]] = {
    "torchao int8 weight-only": torchao_int8,
    "torchao int4 weight-only g128": torchao_int4,
    "HQQ 4-bit g64": hqq_4bit,
    "HQQ 3-bit g64": hqq_3bit,
    "HQQ 2-bit g32": hqq_2bit,
    "quanto qint8": quanto_int8,
    "quanto qint4": quanto_int4,
    "bitsandbytes nf4 b64": bnb_nf4,
    "bitsandbytes LLM.int8": bnb_int8,
    "llmcompressor GPTQ W4A16 g128": llmc_gptq_w4a16,
    "llmcompressor SparseGPT 50 %": llmc_sparsegpt50,
    "llmcompressor SparseGPT 50 % + GPTQ W4A16": llmc_sparsegpt50_w4a16,
}


def peer_names() -> list[str]:
    return list(PEERS)


def run_peer(name: str, model, batches) -> PeerResult:
    """Run one peer on a deep copy of ``model``; any failure (library missing, no CPU support) comes
    back as a result with ``model=None`` and the exception's one line in ``note``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return PEERS[name](model, batches)
    except Exception as exc:  # noqa: BLE001  (a peer that cannot run here is reported, not raised)
        line = (str(exc).strip().splitlines() or [""])[0]
        return _not_run(name, f"cannot run here: {type(exc).__name__}: {line}"[:300])


def main(argv: list[str] | None = None) -> None:
    from sparsecodec.models import corpus, minilm
    from sparsecodec.models.text_batches import tokenized_batches

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", nargs="*", help="run only the peers whose name contains one of these")
    args = parser.parse_args(argv)
    model, tokenizer = minilm.load_model(), minilm.load_tokenizer()
    batches = tokenized_batches(tokenizer, corpus.prose_sentences(320, split="calibration"))
    sentences = corpus.prose_sentences(64)
    dense = minilm.sentence_embeddings(model, tokenizer, sentences)
    names = [n for n in peer_names() if not args.peers or any(p.lower() in n.lower() for p in args.peers)]
    print(f"{'peer':44s} {'cosine':>8s} {'bits':>7s} {'seconds':>8s}  note")
    for name in names:
        r = run_peer(name, model, batches)
        if r.model is None:
            print(f"{r.name:44s} {'-':>8s} {'-':>7s} {'-':>8s}  not run: {r.note}", flush=True)
            continue
        cosine = minilm.embedding_cosine(dense, minilm.sentence_embeddings(r.model, tokenizer, sentences))
        print(f"{r.name:44s} {cosine:8.5f} {r.bits_per_weight_linear:7.3f} {r.seconds:8.1f}  {r.note}", flush=True)


if __name__ == "__main__":
    main()

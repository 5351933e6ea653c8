"""Run one llmcompressor recipe on a BertModel, on CPU, in a Python environment that has llmcompressor.

Called by ``bench/peer_compressors.py`` in a subprocess (llmcompressor pins versions of transformers
and torch that conflict with the main environment), as

    $SPARSECODEC_PEER_PYTHON bench/peer_llmcompressor.py JOB.json

``JOB.json`` holds ``model_dir`` (a saved ``transformers.BertModel``), ``recipe`` (a key of
:data:`RECIPES`), ``sequences`` (the calibration inputs: one dict of ``input_ids`` and
``token_type_ids`` lists per sentence, padding already removed) and ``out_dir``. The script writes
to ``out_dir``:

* ``weights.safetensors``: the Linear weights as the compressed model computes with them (quantised
  and dequantised, pruned), float32, under the BertModel ``state_dict`` names;
* ``result.json``: ``seconds`` (oneshot wall time), ``config`` (one line), ``format`` (the
  compressed-tensors format of the saved checkpoint), ``bits`` (per Linear layer: the bits of every
  tensor the compressed checkpoint stores for that layer's weight, the bias excluded, over the
  weight count) and ``error`` (the exception's one line if oneshot failed, else null).

Nothing here imports sparsecodec; only torch, transformers, safetensors and llmcompressor.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
import traceback

#: recipe key -> one-line description of the llmcompressor configuration.
RECIPES = {
    "gptq_w4a16": "GPTQModifier(targets=Linear, scheme=W4A16: int4 symmetric, group 128)",
    "sparsegpt50": "SparseGPTModifier(sparsity=0.5, mask_structure=0:0 (unstructured), targets=Linear)",
    "sparsegpt50_gptq_w4a16": "SparseGPTModifier(sparsity=0.5, unstructured) then GPTQModifier(scheme=W4A16)",
}


def build_recipe(key: str) -> list:
    from llmcompressor.modifiers.pruning import SparseGPTModifier
    from llmcompressor.modifiers.quantization import GPTQModifier

    gptq = GPTQModifier(targets="Linear", scheme="W4A16", ignore=[])
    sparse = SparseGPTModifier(sparsity=0.5, mask_structure="0:0", targets=["Linear"], ignore=[])
    return {"gptq_w4a16": [gptq], "sparsegpt50": [sparse], "sparsegpt50_gptq_w4a16": [sparse, gptq]}[key]


def calibration_loader(sequences: list[dict], batch_size: int = 16):
    """Batches of up to ``batch_size`` sentences of one token length each, so that no padding token
    enters the Hessians (llmcompressor does not mask padding) and the steps are few."""
    import torch

    by_length: dict[int, list[dict]] = {}
    for seq in sequences:
        by_length.setdefault(len(seq["input_ids"]), []).append(seq)
    batches = []
    for length in sorted(by_length):
        group = by_length[length]
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            ids = torch.tensor([s["input_ids"] for s in chunk], dtype=torch.long)
            types = torch.tensor([s.get("token_type_ids") or [0] * length for s in chunk], dtype=torch.long)
            batches.append({"input_ids": ids, "token_type_ids": types, "attention_mask": torch.ones_like(ids)})
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)


def effective_weights(model) -> dict:
    """The weight of every Linear as the forward uses it: fake-quantised with the module's own
    scales and zero points when llmcompressor attached a quantisation scheme, else as stored."""
    import torch
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize

    out = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            w = module.weight.detach().float()
            scheme = getattr(module, "quantization_scheme", None)
            if scheme is not None and scheme.weights is not None:
                zero = getattr(module, "weight_zero_point", None)
                w = fake_quantize(w, module.weight_scale.float(), zero, scheme.weights).float()
            out[f"{name}.weight"] = w.contiguous().clone()
    return out


def stored_bits(save_dir: pathlib.Path, weights: dict) -> tuple[dict, str]:
    """Bits per weight of each Linear in the compressed checkpoint: every tensor saved under the
    layer's prefix except its bias (weight or packed weight, scales, zero points, g_idx, bitmask,
    row offsets, shapes), in bits, over the layer's weight count."""
    from safetensors import safe_open

    sizes: dict[str, int] = {}
    for path in sorted(save_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                sizes[key] = t.numel() * t.element_size() * 8
    bits = {}
    for wname, w in weights.items():
        prefix = wname[: -len("weight")]
        total = sum(b for k, b in sizes.items() if k.startswith(prefix) and k != prefix + "bias")
        bits[wname[: -len(".weight")]] = total / w.numel()
    config = json.loads((save_dir / "config.json").read_text())
    qc = config.get("quantization_config") or config.get("compression_config") or {}
    formats = [qc.get("format"), (qc.get("sparsity_config") or {}).get("format")]
    return bits, " + ".join(str(f) for f in formats if f) or "dense float32"


def main(job_path: str) -> int:
    job = json.loads(pathlib.Path(job_path).read_text())
    out_dir = pathlib.Path(job["out_dir"])
    result = {"config": RECIPES[job["recipe"]], "seconds": None, "format": None, "bits": None, "error": None}
    try:
        import torch
        from llmcompressor import oneshot
        from safetensors.torch import save_file
        from transformers import BertModel

        torch.set_num_threads(int(job.get("threads", torch.get_num_threads())))
        model = BertModel.from_pretrained(job["model_dir"], local_files_only=True).float().eval()
        loader = calibration_loader(job["sequences"])
        t0 = time.perf_counter()
        model = oneshot(
            model=model,
            recipe=build_recipe(job["recipe"]),
            dataset=loader,
            num_calibration_samples=len(loader),
            pipeline=job.get("pipeline", "independent"),
        )
        result["seconds"] = time.perf_counter() - t0
        weights = effective_weights(model)
        save_file(weights, str(out_dir / "weights.safetensors"))
        save_dir = out_dir / "compressed"
        model.save_pretrained(str(save_dir), save_compressed=True)
        result["bits"], result["format"] = stored_bits(save_dir, weights)
    except Exception as exc:  # noqa: BLE001  (reported to the parent as one line)
        traceback.print_exc()
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result["error"] = f"{type(exc).__name__}: {line}"[:400]
    (out_dir / "result.json").write_text(json.dumps(result))
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

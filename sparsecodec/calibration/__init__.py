"""Calibrated compression of pretrained models: the statistics of each layer's inputs over a few
batches of real data, and the methods that use them.

* :mod:`.second_order`: GPTQ and SparseGPT, one solver on the inverse Hessian of a layer's inputs;
* :mod:`.hessian`: the Hessian ``X^T X`` of a layer's inputs, gathered by forward hooks (padding
  positions excluded);
* :mod:`.sequential`: the pipeline ``compress_(model, config, calibration=...)`` runs: layers in
  forward order, block by block, each calibrated on inputs that passed through the layers already
  compressed.

Wanda's mask is :func:`sparsecodec.masks.pruning.wanda_mask`.
"""

from .second_order import CLIP_RATIOS, Solution, SolverOptions, UniformGrid, solve

__all__ = ["CLIP_RATIOS", "Solution", "SolverOptions", "UniformGrid", "solve"]

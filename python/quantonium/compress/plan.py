"""What a compression run does, written down before it is done: one independent job per tensor.

A :class:`TensorJob` says everything needed to encode one tensor, and nothing
refers back to the process that made it: a reference to the tensor (a span of
the source file that any machine seeing the file can map, or the array
itself), the codec, its target (a per-tensor SNR, bits per weight or kept
fraction, or the exact step the allocation chose), the codec options
(sensitivity scales) and, for GPTQ, the layer's input Gram matrix. Jobs are
plain data and pickle, so the executor that runs them can be a thread pool
here or a cluster later (issue 13) without the codecs knowing.
:class:`TensorResult` is what a job gives back: the encoded payload and what
was measured while making it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..codecs import Encoded
from ..models.sources import TensorRef

__all__ = ["TensorJob", "TensorResult"]


@dataclass
class TensorJob:
    name: str
    ref: TensorRef
    codec: str  # lossless, direct, rft-dense, fixed, rft-spectral, auto
    #: {"snr_db": x} | {"bpw": x} | {"keep": x} | {"step": x} (allocation) | {} (lossless)
    target: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # codec constructor options (row_scale, col_scale)
    gram: np.ndarray | None = None  # E[x x^T] of the layer's input: GPTQ on the chosen grid
    gram_transposed: bool = False  # the weight is stored (in, out) (GPT-2 Conv1D)
    report: dict[str, Any] = field(default_factory=dict)  # merged into the payload's report in the index
    source_dtype: str | None = None


@dataclass
class TensorResult:
    name: str
    shape: tuple[int, ...]
    dtype: str
    encoded: Encoded
    shannon_gap_bpw: float | None
    source_nbytes: int
    source_dtype: str | None
    seconds: float

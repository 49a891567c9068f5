"""Compression as plan -> executor -> sink (issue 9).

- :mod:`.plan`: :class:`TensorJob` (one tensor, everything needed to code it,
  picklable) and :class:`TensorResult`;
- :mod:`.jobs`: ``run_job`` (read, encode, measure on the real payload);
- :mod:`.executor`: :class:`ThreadExecutor` (ordered, bounded in flight);
- :mod:`.dask_executor`: :class:`DaskExecutor`, the same ``map`` on a Dask
  (``distributed``) cluster, ``--executor dask://HOST:PORT`` (issue 13);
- :mod:`.sink`: :class:`QntSink` (the ``.qnt`` writer, checkpointed after
  every tensor, resumable) and :class:`MemorySink`;
- :mod:`.run`: ``compress`` for per-tensor targets; :mod:`.allocated` for
  one model-wide budget (calibration, curves, streaming allocation, GPTQ);
- :mod:`.progress`: stage bars on stderr.
"""

from .run import CODEC_CHOICES, CompressResult, compress, validate_options

__all__ = ["CODEC_CHOICES", "CompressResult", "compress", "validate_options"]

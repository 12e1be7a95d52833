"""Model families: the registry (``models.registry``, one row per family, pure data), the
``models`` command (``models.table``), memory estimates (``models.memory``), bitsandbytes
quantisation (``models.quantization``), the processors without video (``models.processors``),
tiny offline models (``models.tiny``) and loading (``models.loading``).

Importing this package is light (no torch, no transformers): import the module you need, e.g.
``from sam2_finetune.models.loading import load_model``.
"""

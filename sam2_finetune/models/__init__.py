"""Model families: loading (``models.loading``), tiny offline models (``models.tiny``) and the
registry with memory estimates (``models.registry``).

Importing this package is light (no torch, no transformers): import the module you need, e.g.
``from sam2_finetune.models.loading import load_model``.
"""

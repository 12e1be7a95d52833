"""sam2-finetune: SAM2 video-annotation exports -> fine-tuned vision-language models.

The pipeline, one module per stage: ``ingest`` -> ``convert`` -> ``validate`` -> ``split`` ->
``train`` -> ``evaluate`` -> ``export``. Importing this package is light (no torch): import the
stage you need, e.g. ``from sam2_finetune.ingest import read_export``.
"""

__version__ = "0.1.0"

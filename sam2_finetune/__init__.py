"""sam2-finetune: SAM2 video-annotation exports -> fine-tuned vision-language models.

The pipeline, one module per stage: ``ingest`` -> ``convert`` -> ``validate`` -> ``split`` ->
``train`` -> ``evaluate`` -> ``export``. Importing this package is light (no torch): import the
stage you need, e.g. ``from sam2_finetune.ingest import read_export``.
"""

from importlib.metadata import PackageNotFoundError, version

# One source of truth: pyproject.toml's version, as installed (editable installs included).
try:
    __version__ = version("sam2-finetune")
except PackageNotFoundError:  # a source tree on sys.path without installing it
    __version__ = "0+unknown"

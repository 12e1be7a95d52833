"""Tests of sam2_finetune.split, one file per module (a package: basenames such as
test_options.py may repeat in other test folders)."""

"""Tests of sam2_finetune.testing (a package, so basenames may repeat in other test folders)."""

import sys

from sam2_finetune.cli import main

sys.exit(main())

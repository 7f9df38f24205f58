"""`python -m sapo_vl.evaluation ...`: the eval command without the `sapo-vl` wrapper, for launchers
(`torchrun --nproc_per_node N -m sapo_vl.evaluation --task TASK --model M --out DIR`)."""
import sys

from .cli import main

sys.exit(main())

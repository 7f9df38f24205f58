"""A training launch whose rollout rank fails on purpose at its second batch (for tests/test_split.py).

    RANK=… WORLD_SIZE=2 MASTER_ADDR=… MASTER_PORT=… python tests/split_fault.py hang|die CONFIG key=value ...

hang: the rollout rank's sampling never returns; die: the rollout rank's process exits with code 3.
"""
import os
import sys
import time

from sapo_vl import split, train

MODE = sys.argv[1]
calls = 0
real = split.sample_and_score


def failing(*args, **kwargs):
    global calls
    calls += 1
    if calls == 2:
        if MODE == "die":
            os._exit(3)
        time.sleep(3600)
    return real(*args, **kwargs)


split.sample_and_score = failing
sys.exit(train.main(sys.argv[2:]))

"""What tests/test_distributed.py launches to check that processes agree on what exists: rank 1
arrives late, after rank 0 has stored a cache entry; it must still take rank 0's path (make and
store, whose write ends with a barrier) instead of loading the new file and skipping that
barrier, which would leave the processes waiting at different collective calls."""

import time

from tutorial_lib import cache, distributed, models, profiles

cfg = profiles.resolve("smoke")
if distributed.rank() == 1:
    time.sleep(2)
cache.get_or_make("race", cfg, (), ("tutorial_lib.cache",), lambda: models.VGG([2, "M"], num_classes=2))
distributed.barrier()
print(f"DONE {distributed.rank()}", flush=True)

"""What tests/test_distributed.py launches under torchrun: ``python -m tutorial_lib.compress``
with two test instruments, set by environment variables.

- ``DDP_AUDIT=<folder>``: every process other than rank 0 records each file it opens for
  writing under ``<folder>`` and prints the list as ``WRITES <rank> <json>`` when it ends.
- ``DDP_KILL_AT_STEP=<n>``: rank 1 dies (``os._exit``, no clean-up, as a killed process)
  at its n-th optimizer step, counted over every training run of the process.
"""

import atexit
import json
import os
import sys

import torch
import torch.export

from tutorial_lib import train
from tutorial_lib.compress import cli

rank = int(os.environ.get("RANK", "0"))
audit = os.environ.get("DDP_AUDIT")
if audit and rank != 0:
    written: list[str] = []

    def record(path) -> None:
        if isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(audit):
            written.append(os.fspath(path))

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            mode, flags = args[1], args[2]
            if (mode is not None and any(c in mode for c in "wax+")) or \
                    (mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                record(args[0])
        elif event in ("os.rename", "os.mkdir", "os.remove", "shutil.copyfile"):
            record(args[1] if event in ("os.rename", "shutil.copyfile") else args[0])

    sys.addaudithook(hook)
    save, export_save = torch.save, torch.export.save  # they write from C++, past the audit hook
    torch.save = lambda obj, f, *a, **k: (record(f), save(obj, f, *a, **k))[1]
    torch.export.save = lambda program, f, *a, **k: (record(f), export_save(program, f, *a, **k))[1]
    atexit.register(lambda: print(f"WRITES {rank} {json.dumps(written)}", flush=True))

kill_at = int(os.environ.get("DDP_KILL_AT_STEP", "0"))
if kill_at and rank == 1:
    steps = [0]
    step = train.amp.Precision.step

    def counted(self, optimizer):
        steps[0] += 1
        if steps[0] == kill_at:
            os._exit(9)
        step(self, optimizer)

    train.amp.Precision.step = counted

sys.exit(cli.main(sys.argv[1:]))

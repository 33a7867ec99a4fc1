"""An on-disk cache for inductor (``torch.compile``) per CPU capability, chosen as soon as
``tutorial_lib`` is imported, before any module imports inductor and fixes its default.

Inductor's cache does not key the C++ kernels it generates by the instruction set ATen runs
with: on one host, a kernel compiled with the default AVX-512 and loaded again under
``ATEN_CPU_CAPABILITY=avx2`` returned NaN (or aborted the process). A cache per capability
(``torch.backends.cpu.get_cpu_capability()``) keeps them apart; a cache the user chose
(``TORCHINDUCTOR_CACHE_DIR``) is left as it is.
"""

from __future__ import annotations

import getpass
import os
import tempfile

import torch


def inductor_cache_dir() -> str:
    """``TORCHINDUCTOR_CACHE_DIR``, set to ``<tmp>/torchinductor_<user>_<capability>`` unless set."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "user"
        capability = torch.backends.cpu.get_cpu_capability().lower()
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"torchinductor_{user}_{capability}")
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]

"""tutorial_lib: the small helper library behind the compression lessons.

Each lesson imports only what it teaches, for example::

    from tutorial_lib import profiles, data, models, masks

The modules hold one concept each: ``profiles`` (settings and their validation),
``repro`` (seeding), ``data`` (datasets by name), ``models`` (VGG from a signature),
``masks`` (the learnable binary channel mask), ``train`` (fit/evaluate with checkpoints),
``cache`` (artifacts computed once per configuration), ``metrics`` (parameters, FLOPs,
latency), ``tables``/``report`` (published-beside-measured tables and REPORT.md).
"""

__version__ = "0.1.0"

import logging as _logging

# torch's CUDA wheels look for a CUDA toolkit when torch.utils.cpp_extension is imported
# (torch.compile and the FLOP counter pull it in) and log a warning on a machine without a
# GPU. It says nothing about the lessons, and in a notebook it lands in the committed outputs.
_logging.getLogger("torch.utils.cpp_extension").setLevel(_logging.ERROR)

# inductor's on-disk cache, one per CPU capability, fixed before any module imports inductor
# (see tutorial_lib.measure.inductor_cache: a kernel compiled under AVX-512 and reloaded under
# ATEN_CPU_CAPABILITY=avx2 gave NaN)
from tutorial_lib.measure.inductor_cache import inductor_cache_dir as _inductor_cache_dir  # noqa: E402

_inductor_cache_dir()

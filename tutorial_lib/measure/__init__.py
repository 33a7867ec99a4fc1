"""Measuring, at the bottom of the library: the one latency timer (``timer``: warm-ups, fixed
threads, median of timed blocks, rounds in turn), the platforms a latency is taken on
(``platforms``), a layer-wise profiler (``profiler``) and the inference runtimes a model can
be timed under (``runtimes``). Every lesson and ``bench`` time through these."""

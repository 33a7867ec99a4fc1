"""Lesson 07: prune, distill and quantize from one recipe (``recipe``), run by ``pipeline``, to a
budget by ``budget``, exported by ``export``; ``experiment`` holds the lesson's comparison."""

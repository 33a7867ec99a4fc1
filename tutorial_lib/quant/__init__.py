"""Quantization (lesson 06): fake quantizers, bit-packing, QAT, real int8 and bits per layer."""

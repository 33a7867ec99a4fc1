"""Predict with an exported model in a process that has only PyTorch and torchao: no tutorial_lib.

    python -I predict.py MODEL.pt2 INPUTS.pt REPORT.json [--batch 64] [--repeats 10] [--threads N]

Loads the program, compiles it with inductor (freezing on, as int8 kernels need), predicts
the class of every image of ``INPUTS.pt`` (a dict with ``images``) in batches of ``--batch``
(the last one padded), times a full batch ``--repeats`` times, and writes the predictions, the
median milliseconds per batch and the file's size to ``REPORT.json``. Copy it next to a model to
deploy: it imports torch, and torchao's x86 quantizer module for one side effect: importing it
registers inductor's int8 fusions. Without it the same program compiles to float32
convolutions on dequantized weights (measured on lesson 07's model: 9.8 ms a batch of 64
instead of 5.6).
"""

import argparse
import json
import logging
import os
import statistics
import sys
import time
import warnings

import torch
import torch._inductor.config as inductor
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the int8 (de)quantize ops)

logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's import logs a deprecation
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401  (inductor's int8 fusions)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("report")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = torch.export.load(args.model).module()
    fast = torch.compile(model, dynamic=False)
    images = torch.load(args.inputs)["images"]
    predictions = []
    with inductor.patch(freezing=True), torch.no_grad():
        for start in range(0, len(images), args.batch):
            x = images[start:start + args.batch]
            n = len(x)
            if n < args.batch:
                x = torch.cat([x, x.new_zeros(args.batch - n, *x.shape[1:])])
            predictions += fast(x)[:n].argmax(1).tolist()
        x = images[: args.batch]
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fast(x)
            times.append((time.perf_counter() - t0) * 1e3)
    report = {"predictions": predictions, "ms per batch": statistics.median(times), "batch": args.batch,
              "threads": args.threads, "file bytes": os.path.getsize(args.model),
              "tutorial_lib imported": any(m.split(".")[0] == "tutorial_lib" for m in sys.modules)}
    with open(args.report, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()

"""What tests/test_distributed.py launches under torchrun to check ``train.fit``'s arithmetic:
a small model without BatchNorm (so N processes must reproduce one process on the same global
batch to float rounding) plus a parameter outside the model (as a FitNet regressor), trained
for two epochs; rank 0 saves the final weights to ``argv[1]``."""

import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset

from tutorial_lib import data, distributed, train
from tutorial_lib.recipes import Run, Schedule

g = torch.Generator().manual_seed(0)
images, labels = torch.randn(96, 3, 8, 8, generator=g), torch.randint(0, 4, (96,), generator=g)
bundle = data.DataBundle("toy", TensorDataset(images, labels), TensorDataset(images[:32], labels[:32]), 4, 8, "toy")
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
outside = nn.Parameter(torch.ones(4))  # trained beside the model, like a regressor
schedule = Schedule(2, 16, 0.05, 0.9, 5e-4, (1,), 0.1)
optimizer = train.sgd([*model.parameters(), outside], schedule)
history = train.fit(model, bundle, schedule, Run(seed=3, threads=1), optimizer=optimizer,
                    regularizer=lambda m, x, y, out: {"outside": 0.1 * ((out - outside) ** 2).sum(1).mean()})
if distributed.is_main():
    torch.save({"model": model.state_dict(), "outside": outside.detach(), "loss": history["loss_task"].tolist()},
               sys.argv[1])

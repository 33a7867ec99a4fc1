"""Monodepth's VGG encoder-decoder (Godard et al., CVPR 2017), built from its channel widths.

The network of the paper's ``build_vgg``: an encoder of seven blocks, each a stride-1 conv
and a stride-2 conv (kernels 7, 5, 3, 3, 3, 3, 3; channels 32 ... 512), and a decoder that
goes back up with ``upconv`` (nearest x2 upsample then a 3x3 conv), concatenates the
encoder's skip features, fuses them with ``iconv`` and, at the four finest scales, predicts
a left and a right disparity as ``0.3 * sigmoid`` (a fraction of the image width). Every
conv is followed by ELU and has a bias; there is no batch norm. Padding is zero padding of
``(k - 1) // 2`` pixels, as in the TensorFlow code (``tf.pad`` then a VALID conv).

The 21 *prunable* convs are the 14 encoder convs and the 7 upconvs; their output channels
(``widths``) are all a pruned model needs to be rebuilt. The iconvs keep the published widths
(scaled by ``width``), as in the seed; beyond the seed they can be pruned too
(``prunable_convs(iconvs=True)``, their widths in ``iconv_widths``). The disparity heads' two
output channels are the left and right disparity and are never pruned. At full size with RGB
input the model has 31,600,072 parameters. Inputs must have height and width divisible by 128
(seven stride-2 convs); :func:`check_input_size` says so before a run, ``forward`` does not
check (tracing).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# The published channel counts and kernel sizes of build_vgg.
ENCODER_CHANNELS = (32, 64, 128, 256, 512, 512, 512)
ENCODER_KERNELS = (7, 5, 3, 3, 3, 3, 3)
DECODER_CHANNELS = (512, 512, 256, 128, 64, 32, 16)  # upconv7 ... upconv1 (and iconv7 ... iconv1)
DISP_SCALES = (4, 3, 2, 1)  # iconvs with a disparity head
DISP_SCALE = 0.3  # disparities are 0.3 * sigmoid: at most 30% of the image width
DIVISOR = 2 ** len(ENCODER_CHANNELS)  # 128

ENCODER = [f"conv{i}{ab}" for i in range(1, 8) for ab in "ab"]
PRUNABLE = ENCODER + [f"upconv{i}" for i in range(7, 0, -1)]
ICONVS = [f"iconv{i}" for i in range(7, 0, -1)]
# Beyond the seed: the iconvs too, in graph order (each decoder scale: upconv, then iconv).
PRUNABLE_WITH_ICONVS = ENCODER + [name for i in range(7, 0, -1) for name in (f"upconv{i}", f"iconv{i}")]


def prunable_convs(model: nn.Module | None = None, iconvs: bool = False) -> list[str]:
    """The module names whose output channels may be pruned, in graph order: the seed's 21
    (conv1a, conv1b, ..., conv7b, upconv7, ..., upconv1), or with ``iconvs`` also the 7 iconvs
    that fuse the skips (28: ..., upconv7, iconv7, upconv6, iconv6, ...)."""
    return list(PRUNABLE_WITH_ICONVS if iconvs else PRUNABLE)


def check_input_size(height: int, width: int) -> None:
    """Raise ``ValueError`` unless 128 divides ``height`` and ``width`` (seven halvings must
    give whole feature maps for the skips to line up), naming the nearest valid sizes."""
    bad = [(name, v) for name, v in (("height", height), ("width", width)) if v <= 0 or v % DIVISOR]
    if bad:
        def nearest(v: int) -> str:
            lo = (v // DIVISOR) * DIVISOR
            return " or ".join(str(c) for c in (lo, lo + DIVISOR) if c > 0)

        detail = "; ".join(f"{name} {v}: nearest valid {nearest(v)}" for name, v in bad)
        raise ValueError(f"{DIVISOR} must divide height and width of a MonoDepth input, got "
                         f"{height}x{width} ({detail})")


def default_widths(width: float = 1.0) -> list[int]:
    """The 21 prunable widths of the published model scaled by ``width`` (at least 1 each)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    enc = [c for c in ENCODER_CHANNELS for _ in "ab"]
    return [max(1, int(round(c * width))) for c in (*enc, *DECODER_CHANNELS)]


def _check_widths(widths: Sequence[int], names: Sequence[str] = PRUNABLE, what: str = "widths") -> list[int]:
    out = list(widths)
    if len(out) != len(names):
        raise ValueError(f"MonoDepth has {len(names)} such convs ({', '.join(names)}); "
                         f"{what} needs {len(names)} entries, got {len(out)}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out):
        raise ValueError(f"MonoDepth {what} are channel counts >= 1, got {out!r}")
    return out


class MonoDepth(nn.Module):
    """Monodepth (VGG variant): ``forward(x)`` returns ``(disp1, disp2, disp3, disp4)``.

    ``disp1`` is at full resolution, ``disp4`` at 1/8; each has two channels, the left and
    the right disparity, as a fraction of the image width. ``width`` scales every channel
    count; ``widths`` (21 ints) overrides the prunable convs' output channels, in the order
    of :func:`prunable_convs`, and ``iconv_widths`` (7 ints, iconv7 ... iconv1) the iconvs'.
    """

    def __init__(self, width: float = 1.0, widths: Sequence[int] | None = None, in_channels: int = 3,
                 iconv_widths: Sequence[int] | None = None):
        super().__init__()
        self.width = float(width)
        self.widths: list[int] = _check_widths(default_widths(width) if widths is None else widths)
        self.in_channels = in_channels
        self.iconv_widths: list[int] = _check_widths(
            [max(1, int(round(c * self.width))) for c in DECODER_CHANNELS] if iconv_widths is None else iconv_widths,
            ICONVS, "iconv_widths")
        w = dict(zip(PRUNABLE, self.widths))

        channels = in_channels
        for i, k in enumerate(ENCODER_KERNELS, start=1):  # conv_block: stride 1 then stride 2
            self.add_module(f"conv{i}a", nn.Conv2d(channels, w[f"conv{i}a"], k, 1, (k - 1) // 2))
            self.add_module(f"conv{i}b", nn.Conv2d(w[f"conv{i}a"], w[f"conv{i}b"], k, 2, (k - 1) // 2))
            channels = w[f"conv{i}b"]
        for i, iconv in zip(range(7, 0, -1), self.iconv_widths):
            up = w[f"upconv{i}"]
            self.add_module(f"upconv{i}", nn.Conv2d(channels, up, 3, 1, 1))
            skip = w[f"conv{i - 1}b"] if i > 1 else 0
            udisp = 2 if i <= 3 else 0
            self.add_module(f"iconv{i}", nn.Conv2d(up + skip + udisp, iconv, 3, 1, 1))
            if i in DISP_SCALES:
                self.add_module(f"disp{i}", nn.Conv2d(iconv, 2, 3, 1, 1))
            channels = iconv
        self.elu = nn.ELU()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self._init_weights()

    def _init_weights(self) -> None:
        # Xavier (Glorot uniform) weights and zero biases: slim.conv2d's defaults in the TF code.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        skips = []
        for i in range(1, 8):
            x = self.elu(getattr(self, f"conv{i}a")(x))
            x = self.elu(getattr(self, f"conv{i}b")(x))
            skips.append(x)  # skip_i = conv_i, at 1/2**i
        disps: dict[int, torch.Tensor] = {}
        for i in range(7, 0, -1):
            up = self.elu(getattr(self, f"upconv{i}")(self.upsample(x)))
            parts = [up]
            if i > 1:
                parts.append(skips[i - 2])  # skip_{i-1}
            if i <= 3:
                parts.append(self.upsample(disps[i + 1]))  # udisp_{i+1}
            x = self.elu(getattr(self, f"iconv{i}")(torch.cat(parts, 1)))
            if i in DISP_SCALES:
                disps[i] = DISP_SCALE * torch.sigmoid(getattr(self, f"disp{i}")(x))
        return disps[1], disps[2], disps[3], disps[4]

    def prunable_convs(self) -> list[str]:
        """Where ``masks.insert_masks`` puts masks by default: the 14 encoder convs and 7 upconvs."""
        return prunable_convs(self)

    def spec(self) -> dict:
        """What is needed to rebuild this model: stored beside every checkpoint."""
        return {"class": "MonoDepth", "width": self.width, "widths": list(self.widths),
                "iconv_widths": list(self.iconv_widths), "in_channels": self.in_channels}


def from_spec(spec: dict) -> nn.Module:
    """Rebuild a model from :meth:`MonoDepth.spec` (weights come from the state dict)."""
    if spec.get("class") != "MonoDepth":
        raise ValueError(f"cannot rebuild a model of class {spec.get('class')!r}; known: MonoDepth")
    return MonoDepth(width=spec.get("width", 1.0), widths=spec.get("widths"), in_channels=spec.get("in_channels", 3),
                     iconv_widths=spec.get("iconv_widths"))


def resize_spec(spec: dict, widths: list[int]) -> dict:
    """``spec`` with the output channels of its masked convs replaced, in graph order: the 21
    prunable convs, or the 28 of ``prunable_convs(iconvs=True)`` (the iconvs' go to ``iconv_widths``)."""
    if len(widths) == len(PRUNABLE):
        return {**spec, "widths": [int(v) for v in widths]}
    if len(widths) == len(PRUNABLE_WITH_ICONVS):
        by_name = dict(zip(PRUNABLE_WITH_ICONVS, (int(v) for v in widths)))
        return {**spec, "widths": [by_name[n] for n in PRUNABLE], "iconv_widths": [by_name[n] for n in ICONVS]}
    raise ValueError(f"a MonoDepth has {len(PRUNABLE)} prunable convolutions ({len(PRUNABLE_WITH_ICONVS)} with "
                     f"its iconvs) and needs as many widths, got {len(widths)}")

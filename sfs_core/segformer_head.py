"""SegFormer's all-MLP decoder, rewritten to fuse before upsampling (same output, ~6x fewer MACs).

The decoder projects every encoder stage to ``D`` channels, upsamples all four to 1/4 of the
input, concatenates them and fuses with a 1x1 convolution (``4D -> D``), then batch norm, ReLU
and the classifier. Projection, upsampling and fusion are all linear, and bilinear upsampling
commutes with a per-pixel linear map, so

    fuse(concat(up(P_i x_i + p_i))) == sum_i up(F_i P_i x_i + F_i p_i)

Each stage goes straight to ``D`` channels at its own resolution; batch norm (eval) folds into
the same weights. For SegFormer-B0 at 512x512 the decoder drops from ~5.2 to ~0.9 GMACs (the
fuse convolution alone was 4.3 of the model's 8.4). The result equals the original up to float rounding (checked in tests).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FusedSegformerDecodeHead(nn.Module):
    """Drop-in, inference-only replacement for ``transformers``' ``SegformerDecodeHead``."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.reshape_last_stage = getattr(head.config, "reshape_last_stage", True)
        width = head.config.decoder_hidden_size
        count = len(head.linear_projections)
        with torch.no_grad():
            fuse = head.linear_fuse.weight[:, :, 0, 0]  # (D, count*D): stage blocks in reverse order
            norm = head.batch_norm
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            bias = norm.bias - norm.running_mean * scale
            self.stages = nn.ModuleList()
            for i, projection in enumerate(head.linear_projections):
                block = fuse[:, (count - 1 - i) * width:(count - i) * width]
                linear = projection.proj
                conv = nn.Conv2d(linear.in_features, width, kernel_size=1, bias=False)
                conv.weight.copy_((scale[:, None] * (block @ linear.weight))[:, :, None, None])
                bias = bias + scale * (block @ linear.bias)
                self.stages.append(conv)
        self.bias = nn.Parameter(bias.view(1, width, 1, 1), requires_grad=False)
        self.activation = head.activation
        self.classifier = head.classifier
        self.eval()

    def forward(self, encoder_hidden_states, **kwargs) -> torch.Tensor:
        size = encoder_hidden_states[0].shape[2:]
        fused = self.bias
        for x, stage in zip(encoder_hidden_states, self.stages):
            if not self.reshape_last_stage and x.ndim == 3:  # tokens of a square map, as transformers reads them
                side = int(math.sqrt(x.shape[-1]))
                x = x.reshape(x.shape[0], side, side, -1).permute(0, 3, 1, 2).contiguous()
            y = stage(x)
            if y.shape[2:] != size:
                y = nn.functional.interpolate(y, size=size, mode="bilinear", align_corners=False)
            fused = fused + y
        return self.classifier(self.activation(fused))


def fuse_decode_head(model: nn.Module) -> nn.Module:
    """``model`` (a ``SegformerForSemanticSegmentation`` in eval mode) with its decoder rewritten."""
    model.decode_head = FusedSegformerDecodeHead(model.decode_head)
    return model

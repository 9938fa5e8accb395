"""Split-free equivalents of Ultralytics' C2f/C3k2 and C2PSA blocks, so a dependency graph can prune them.

C2f (and its YOLO11 subclass C3k2) splits `cv1`'s output with `chunk`, C2PSA with `split`; Torch-Pruning cannot
follow a channel through a split whose halves must stay equal. Each block here replaces that one convolution by
two whose weights and BatchNorm statistics are the halves of `cv1`'s: in eval mode the output is identical.
Pruned checkpoints pickle these classes, so loading one needs `workbench` installed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_ROUTING = ("f", "i", "type", "np")  # attributes Ultralytics' model forward and summaries read from each layer


def _half(conv, start: int, stop: int):
    """A copy of an Ultralytics `Conv` (conv + bn + act) keeping output channels [start, stop)."""
    part = copy.deepcopy(conv)
    part.conv.weight = nn.Parameter(conv.conv.weight.detach()[start:stop].clone())
    if conv.conv.bias is not None:
        part.conv.bias = nn.Parameter(conv.conv.bias.detach()[start:stop].clone())
    part.conv.out_channels = stop - start
    bn = part.bn
    bn.weight = nn.Parameter(conv.bn.weight.detach()[start:stop].clone())
    bn.bias = nn.Parameter(conv.bn.bias.detach()[start:stop].clone())
    bn.running_mean = conv.bn.running_mean[start:stop].clone()
    bn.running_var = conv.bn.running_var[start:stop].clone()
    bn.num_features = stop - start
    return part


class _SplitFree(nn.Module):
    def __init__(self, block, half: int):
        super().__init__()
        self.cv0 = _half(block.cv1, 0, half)
        self.cv1 = _half(block.cv1, half, 2 * half)
        self.m = block.m
        self.cv2 = block.cv2
        for name in _ROUTING:
            if hasattr(block, name):
                setattr(self, name, getattr(block, name))
        self.train(block.training)  # new modules start in training mode; BatchNorm would then use batch statistics


class C2fSplitFree(_SplitFree):
    """C2f / C3k2 without `chunk`: cv0 and cv1 each produce one half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C2PSASplitFree(_SplitFree):
    """C2PSA without `split`: cv0 is the bypass half, cv1 feeds the attention blocks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(torch.cat((self.cv0(x), self.m(self.cv1(x))), 1))


def make_split_free(net: nn.Module) -> int:
    """Replace every C2f, C3k2 and C2PSA layer of an Ultralytics model in place; returns how many were replaced."""
    from ultralytics.nn.modules.block import C2PSA, C2f

    replaced = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, C2f):
                setattr(parent, name, C2fSplitFree(child, child.c))
            elif isinstance(child, C2PSA):
                setattr(parent, name, C2PSASplitFree(child, child.c))
            else:
                continue
            replaced += 1
    return replaced

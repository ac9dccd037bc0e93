"""The PyTorch side of networks.resnet: torchvision's ResNet modules and state-dict names.

Imported only by `networks.resnet.torch_resnet` (references, export): torch stays off the build path.
"""
from __future__ import annotations

import operator

import torch
from torch import nn as tnn

from networks.resnet import side_classes

TORCH = side_classes(tnn.Module, tnn, torch.flatten, __name__, residual=operator.add)
TorchResNet = TORCH.ResNet

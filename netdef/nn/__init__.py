"""netdef.nn: layer modules with torch.nn's names and attributes, each adding TensorRT layers."""
from netdef.module import Module, ModuleList, Parameter, Sequential
from netdef.nn.activation import Hardswish, LeakyReLU, Mish, ReLU, Sigmoid, SiLU, Tanh
from netdef.nn.conv import Conv2d
from netdef.nn.conv_transpose import ConvTranspose2d
from netdef.nn.fold import ConvLike, fold, no_fold
from netdef.nn.linear import Linear
from netdef.nn.norm import BatchNorm2d
from netdef.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from netdef.nn.shape import Flatten, Identity
from netdef.nn.softmax import Softmax
from netdef.nn.upsample import Upsample

__all__ = ["Module", "ModuleList", "Parameter", "Sequential", "Conv2d", "ConvTranspose2d", "ConvLike", "fold", "no_fold", "BatchNorm2d",
           "Linear", "ReLU", "LeakyReLU", "SiLU", "Mish", "Sigmoid", "Tanh", "Hardswish", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "Upsample", "Flatten", "Softmax", "Identity"]

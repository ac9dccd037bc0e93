"""Layer handlers, one module per family; importing this package registers them all."""
from netdef.executor.handlers import (  # noqa: F401
    activation,
    conv,
    elementwise,
    matmul,
    nms,
    plugin,
    pooling,
    quantize,
    reduce,
    resize,
    scale,
    shuffle,
    slicing,
    tensor,
)

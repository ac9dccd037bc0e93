"""Per-layer HDF5 weight files (one group per PyTorch module path) and the exporters that write them.

`weights_export.hdf5` reads and writes the format (docs/hdf5-format.md), `weights_export.pytorch` exports
modules and checkpoints, `weights_export.darknet` parses Darknet cfg/weights. Importing this package is light:
torch is imported only by the PyTorch exporter's functions.
"""
from weights_export.errors import (CheckpointError, DarknetCfgError, DarknetWeightsError, WeightsExportError,
                                   WeightsFileError)

__all__ = ["CheckpointError", "DarknetCfgError", "DarknetWeightsError", "WeightsExportError", "WeightsFileError"]

"""Real-data INT8 accuracy: a small ResNet trained here on scikit-learn's digits keeps its held-out accuracy
after calibration (entropy, percentile, minmax), executed as an INT8 definition by netdef's executor.
Also the calibrate() cache life cycle (write, reuse, refusal on other weights, recalibrate) on that model."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import netdef.functional as F
from netdef import nn
from netdef.executor import execute
from netdef.network import Network
from netdef.quantize import CalibrationCacheError, calibrate
from networks.base import NetworkModel

WIDTH = 16


# --- the network: netdef definition and torch reference with the same names ------------------------------
class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Any) -> Any:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(F.add(out, identity, skip=1))


class DigitsResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, WIDTH, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTH)
        self.relu = nn.ReLU()
        self.layer1 = Block(WIDTH, WIDTH, 1)
        self.layer2 = Block(WIDTH, 2 * WIDTH, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * WIDTH, 10)

    def forward(self, x: Any) -> Any:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(F.flatten(self.avgpool(x), 1))


def torch_digits_resnet() -> torch.nn.Module:
    tnn = torch.nn

    class TBlock(tnn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + identity)

    class TNet(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(1, WIDTH, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(WIDTH)
            self.relu = tnn.ReLU()
            self.layer1 = TBlock(WIDTH, WIDTH, 1)
            self.layer2 = TBlock(WIDTH, 2 * WIDTH, 2)
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(2 * WIDTH, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return TNet()


class DigitsModel(NetworkModel):
    arch = "digits-resnet"

    def define(self, precision: str = "fp32", input_size: Any = None, fp16_io: bool = False,
               calibration: Any = None, skip: tuple[str, ...] = ()) -> Network:
        module = DigitsResNet()
        module.load_weights(self.weights, origin=str(self.path or "weights"))
        with Network(self.arch, precision, fp16_io, int8=self.int8_settings(precision, calibration, skip)) as net:
            net.mark_output(module(net.add_input(self.input_name, (-1, 1, 8, 8))), "logits")
        return net


# --- data, training, export ----------------------------------------------------------------------------------
def train_digits(path: Any) -> tuple[DigitsModel, np.ndarray, np.ndarray, np.ndarray, float]:
    """Train the small ResNet on digits (seconds), export it to `path`; returns the model and the splits."""
    from sklearn.datasets import load_digits

    from weights_export.hdf5 import write_weights

    digits = load_digits()
    x = ((digits.images / 16.0 - 0.5) / 0.5).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1300], order[1300:]
    torch.manual_seed(0)
    model = torch_digits_resnet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    model.train()
    for epoch in range(3):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    write_weights(path, {k: v.numpy() for k, v in model.state_dict().items()},
                  root_attrs={"arch": "digits-resnet", "input_name": "input", "input_shape": [1, 1, 8, 8]})
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean())
    return DigitsModel.from_hdf5(path), x[train], x[test], y[test], torch_acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread avoids OpenMP spin-waiting when cores are shared
    try:
        yield train_digits(tmp_path_factory.mktemp("digits") / "digits.h5")
    finally:
        torch.set_num_threads(threads)


def _accuracy(net: Network, x: np.ndarray, y: np.ndarray) -> float:
    logits = execute(net.definition, {"input": x})["logits"]
    return float((logits.argmax(1).numpy() == y).mean())


def test_int8_keeps_digits_accuracy(trained, tmp_path) -> None:
    model, x_train, x_test, y_test, torch_acc = trained
    fp32 = _accuracy(model.define("fp32"), x_test, y_test)
    assert torch_acc > 0.9 and abs(fp32 - torch_acc) < 0.005  # training worked and netdef FP32 == torch
    calib = x_train[np.random.default_rng().choice(len(x_train), 256, replace=False)]
    results = {}
    for method in ("entropy", "percentile", "minmax"):
        cache = calibrate(model, calib, method=method, samples=256, batch=64, out=tmp_path / f"{method}.json",
                          progress=False)
        assert cache.num_samples == 256 and cache.algorithm == method
        results[method] = _accuracy(model.define("int8", calibration=tmp_path / f"{method}.json"), x_test, y_test)
    print(f"\ndigits held-out accuracy: torch {torch_acc:.4f} netdef fp32 {fp32:.4f} "
          + " ".join(f"int8-{m} {a:.4f}" for m, a in results.items()))
    for method, acc in results.items():
        assert acc >= fp32 - 0.01, f"{method}: INT8 accuracy {acc:.4f} vs FP32 {fp32:.4f}"


def test_int8_definition_is_really_quantized(trained) -> None:
    model, x_train, x_test, _, _ = trained
    net = model.define("int8", calibration=x_train[:64])  # data: calibrated on its FP32 definition first
    types = [net.definition.get_layer(i).type.name for i in range(net.definition.num_layers)]
    assert types.count("QUANTIZE") == types.count("DEQUANTIZE") >= 2 * 7  # 6 convs + fc inputs, their weights
    assert net.meta["int8"]["num_samples"] == 64
    fp32_net = model.define("fp32")  # kept alive: the Network owns the weight arrays TensorRT points to
    fp32 = execute(fp32_net.definition, {"input": x_test[:64]})["logits"].double()
    int8 = execute(net.definition, {"input": x_test[:64]})["logits"].double()
    rel = float((int8 - fp32).norm() / fp32.norm())
    assert 1e-4 < rel < 0.1  # quantization error is there, and small


def test_calibration_cache_reuse_refusal_and_recalibrate(trained, tmp_path) -> None:
    from weights_export.hdf5 import WeightsFile, write_weights

    model, x_train, _, _, _ = trained
    out = tmp_path / "calib.json"
    first = calibrate(model, x_train[:32], method="minmax", batch=32, out=out, progress=False)
    stamp = out.stat().st_mtime_ns
    again = calibrate(model, x_train[:32], method="minmax", out=out, progress=False)  # fingerprint matches: reused
    assert again.amax == first.amax and out.stat().st_mtime_ns == stamp
    with pytest.raises(CalibrationCacheError, match="'minmax', 'entropy' asked"):
        calibrate(model, x_train[:32], method="entropy", out=out, progress=False)
    weights = {k: np.asarray(v) * (1.5 if k == "fc.weight" else 1.0) for k, v in WeightsFile(model.path).items()}
    other_path = tmp_path / "other.h5"
    write_weights(other_path, weights, root_attrs={"arch": "digits-resnet"})
    other = DigitsModel.from_hdf5(other_path)
    with pytest.raises(CalibrationCacheError, match=r"calib.json: does not match this network: the weights differ"):
        calibrate(other, x_train[:32], method="minmax", out=out, progress=False)
    with pytest.raises(CalibrationCacheError, match="weights differ"):
        other.define("int8", calibration=out)
    redone = calibrate(other, x_train[:32], method="minmax", out=out, recalibrate=True, progress=False)
    assert redone.weights_sha256 != first.weights_sha256
    other.define("int8", calibration=out)  # now it fits

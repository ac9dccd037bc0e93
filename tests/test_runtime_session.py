"""InferenceSession through netdef's executor: API, ordering, shapes, dtypes, dynamic batch, input errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from netdef.runtime import InferenceSession, InputError, SessionClosedError
from tests.test_runtime_fixtures import C_IN, C_OUT, SIZE, int_network, rel_err, tiny_network, tiny_reference, tiny_weights

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return tiny_weights(seed=3)


@pytest.fixture(scope="module")
def session(weights):
    with InferenceSession.from_definition(tiny_network(weights), batch=(1, 4, 6)) as s:
        yield s


def _inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, C_IN, SIZE, SIZE)).astype(np.float32),
            "y": rng.standard_normal((batch, C_OUT, SIZE, SIZE)).astype(np.float32)}


def test_outputs_match_torch_in_declared_order_for_every_batch(session, weights):
    assert session.input_names == ["x", "y"]
    assert session.output_names == ["sum", "pooled"]  # declared order, not creation order
    for batch in (1, 4, 6):  # min, opt, max of the dynamic batch range
        feeds = _inputs(batch, seed=batch)
        out = session.infer(feeds)
        ref = tiny_reference(weights, feeds["x"], feeds["y"])
        assert list(out) == ["sum", "pooled"]
        assert out["sum"].shape == (batch, C_OUT, SIZE, SIZE) and out["pooled"].shape == (batch, C_OUT)
        assert all(v.dtype == np.float32 and isinstance(v, np.ndarray) for v in out.values())
        for name in out:
            assert rel_err(out[name], ref[name]) < 1e-5, name


def test_specs_describe_io(session):
    x, y = session.inputs
    assert (x.name, x.dtype, x.shape, x.min_shape, x.max_shape) == ("x", np.float32, (-1, 3, 8, 8), (1, 3, 8, 8),
                                                                      (6, 3, 8, 8))
    assert session.outputs[1].shape == (-1, C_OUT)
    assert session.kind == "netdef"


def test_float64_inputs_are_converted_and_torch_cpu_tensors_accepted(session, weights):
    feeds = _inputs(2, seed=11)
    ref = session.infer(feeds)
    as64 = session.infer({k: v.astype(np.float64) for k, v in feeds.items()})
    as_torch = session.infer({k: torch.from_numpy(v) for k, v in feeds.items()})
    for name in ref:
        np.testing.assert_array_equal(as64[name], ref[name])
        np.testing.assert_array_equal(as_torch[name], ref[name])


def test_async_handle_and_output_arrays(session, weights):
    feeds = _inputs(3, seed=5)
    handle = session.infer_async(feeds)
    out = handle.wait()
    assert handle.done and handle.wait() is out
    into = np.full((3, C_OUT), np.nan, np.float32)
    again = session.infer(feeds, out={"pooled": into})
    assert again["pooled"] is into
    np.testing.assert_array_equal(into, out["pooled"])
    with pytest.raises(InputError, match=r"out\['pooled'\] is float32\[2, 4\], the output is float32\[3, 4\]"):
        session.infer(feeds, out={"pooled": np.zeros((2, C_OUT), np.float32)})
    with pytest.raises(KeyError, match="not outputs"):
        session.infer(feeds, out={"nope": into})


def test_missing_extra_and_misshaped_inputs_are_named_together(session):
    feeds = _inputs(2, seed=1)
    with pytest.raises(InputError) as err:
        session.infer({"x": feeds["x"], "z": feeds["y"]})
    assert "missing input 'y'" in str(err.value) and "unexpected input 'z'" in str(err.value)
    with pytest.raises(InputError, match=r"input 'x': shape \(2, 3, 9, 8\) does not match \[N,3,8,8\] \(dim 2 is 9"):
        session.infer({"x": np.zeros((2, 3, 9, 8), np.float32), "y": feeds["y"]})
    with pytest.raises(InputError, match=r"input 'y': shape \(2, 4, 8\) has rank 3"):
        session.infer({"x": feeds["x"], "y": feeds["y"][:, :, 0]})
    with pytest.raises(InputError, match=r"input 'x': dim 0 is 7, outside the profile range 1..6"):
        session.infer(_inputs(7, seed=2))
    with pytest.raises(InputError, match=r"input 'x': dtype int64 cannot be fed to a float32 input"):
        session.infer({"x": np.zeros((2, 3, 8, 8), np.int64), "y": feeds["y"]})
    with pytest.raises(InputError, match="has 2 inputs \\(x, y\\): pass a dict"):
        session.infer(feeds["x"])


def test_integer_io_and_single_array_input():
    with InferenceSession.from_definition(int_network()) as s:
        ids = np.random.default_rng(0).integers(-1000, 1000, (3, 5))
        out = s.infer(ids)  # int64 values in int32 range are converted
        assert out["shifted"].dtype == np.int32
        np.testing.assert_array_equal(out["shifted"], ids + 7)
        with pytest.raises(InputError, match="input 'ids': values exceed the range of int32"):
            s.infer(np.array([[2**40, 0, 0, 0, 0]]))
        with pytest.raises(InputError, match="input 'ids': dtype float32 cannot be fed to a int32 input"):
            s.infer(np.zeros((1, 5), np.float32))


def test_closed_session_refuses_work(weights):
    s = InferenceSession.from_definition(tiny_network(weights))
    s.close()
    s.close()  # idempotent
    with pytest.raises(SessionClosedError):
        s.infer(_inputs(1, seed=0))


def test_fp16_definition_session(weights):
    with InferenceSession.from_definition(tiny_network(weights, precision="fp16")) as s:
        feeds = _inputs(2, seed=9)
        out = s.infer(feeds)
        ref = tiny_reference(weights, feeds["x"], feeds["y"])
        assert out["sum"].dtype == np.float32  # fp32 I/O by default
        assert rel_err(out["sum"], ref["sum"]) < 3e-3
        assert rel_err(out["sum"], ref["sum"]) > 1e-6  # really computed in half precision

"""converters/landscape.py on the real default task: every method starts from the same point, the
judging loss is the run's own graph, and a trajectory is reproducible for a seed."""
import numpy as np
import pytest

from converters import landscape as cland
from converters.benchmark import Hyper
from tflite_fg import landscape


def _recipe(method):
    return cland.Recipe(method, Hyper(lr=0.5 if method.startswith("ff") else 1e-3, steps=6, batch_size=64))


@pytest.fixture(scope="module")
def setup(cache_dir, tmp_path_factory):
    return cland.setup("LP", tmp_path_factory.mktemp("landscape"), str(cache_dir))


def test_all_methods_start_from_the_same_point_up_to_int8_rounding(setup):
    starts = {m: cland.train(setup, _recipe(m), snapshots=3) for m in cland.METHODS}
    for m, run in starts.items():
        assert run["steps"] == [0, 2, 4, 6] and run["trajectory"].shape == (4, 640)
        assert np.max(np.abs(run["trajectory"][0] - starts["bp-fp32"]["trajectory"][0])) <= 0.5 + 1e-6, m
    np.testing.assert_array_equal(starts["bp-fp32"]["trajectory"][0], starts["ff-fp32"]["trajectory"][0])
    again = cland.train(setup, _recipe("ff-w16"), snapshots=3)
    np.testing.assert_array_equal(again["trajectory"], starts["ff-w16"]["trajectory"])


def test_int8_runs_are_judged_by_the_int8_graph(setup):
    start = setup.model.initial_params()
    loss = cland.loss_function(setup, "ff-w8")
    xq = setup.model.quantize_input(setup.task.x_support)
    direct = setup.model.loss(start, xq, setup.task.y_support)
    assert abs(loss([p.astype(np.float64) for p in start]) - direct) < 1e-5
    # Moves that round back onto the same int8 kernels. Not one constant: a shift shared by every weight of
    # the head adds the same amount to every logit and leaves the float loss unchanged up to rounding.
    rng = np.random.default_rng(0)
    shifted = [p.astype(np.float64) + rng.uniform(-0.45, 0.45, p.shape) for p in start]
    assert loss(shifted) == loss([p.astype(np.float64) for p in start])
    float_loss = cland.loss_function(setup, "ff-fp32")
    assert float_loss(shifted) != float_loss([p.astype(np.float64) for p in start])
    assert landscape.flatten(start).size == setup.model.trainable_params

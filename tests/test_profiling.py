"""The step profiler measures real training steps: its accounting must add up (no timing asserts)."""
import numpy as np

from tflite_fg import profiling
from tflite_fg.config import TrainConfig
from tflite_fg.model import FgModel


def test_step_profile_accounts_for_every_pass(head_model_path, fewshot_task):
    model = FgModel(head_model_path, engine="xnnpack", num_threads=1)
    xq = model.quantize_input(fewshot_task.x_support)
    before = [p.copy() for p in model.initial_params()]
    for cache, m in (("none", 2), ("dataset", 3)):
        cfg = TrainConfig(precision="w16", m=m, batch_size=16, eps_lsb=8, lr=0.5, steps=100)
        p = profiling.step_profile(model, xq, fewshot_task.y_support, cfg, cache, steps=2, warmup=1)
        assert p.passes == 2 * m and p.cache == cache
        assert 0 < p.engine_s < p.step_s and p.forward_s > 0
        assert p.ideal_s == p.passes * p.forward_s
        d = p.as_dict()
        assert d["overhead"] == (p.step_s - p.engine_s) / p.engine_s and d["cache"] == cache
    for a, b in zip(model.initial_params(), before):  # profiling trains a copy, never the model
        np.testing.assert_array_equal(a, b)


def test_seconds_per_call_counts_calls():
    calls = []
    t = profiling.seconds_per_call(lambda: calls.append(1), min_time=0.01, warmup=2, repeats=2)
    assert t > 0 and len(calls) > 4

import os

import numpy as np
import pytest

from tflite_fg import checkpoint, estimators, samplers, trainer, updates
from tflite_fg.checkpoint import CheckpointError

TARGET = [np.arange(-40, 40, 4, dtype=np.float64).reshape(4, 5), np.array([60.0, -70.0, 3.0])]
META = {"model_sha256": "ab" * 32, "param_shapes": [[4, 5], [3]], "seed": 3}


def quadratic(params):
    return float(sum(np.sum((w.astype(np.float64) - t) ** 2) for w, t in zip(params, TARGET)))


def components():
    est = estimators.sign_m_spsa(samplers.gaussian_q8(), 3, 1)
    tx = updates.chain(updates.scale_by_learning_rate(1.0), updates.round_to_int())
    return est, tx


def trained(steps, state=None):
    est, tx = components()
    state = state or trainer.init_state([np.zeros((4, 5), np.int8), np.zeros(3, np.int8)], est, tx)
    for state, _ in trainer.fit(state, lambda step: quadratic, est, tx, 3, steps):
        pass
    return state


def assert_same(a, b):
    assert a.step == b.step and a.forward_passes == b.forward_passes
    assert len(a.params) == len(b.params)
    assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a.params, b.params))
    assert a.estimator_state == b.estimator_state and a.transform_state == b.transform_state


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ckpt.npz"
    state = trained(5)
    checkpoint.save_checkpoint(path, state, META)
    return path, state


def test_round_trip(saved):
    path, state = saved
    loaded, meta = checkpoint.load_checkpoint(path, META)
    assert_same(loaded, state)
    assert meta == META and os.listdir(path.parent) == ["ckpt.npz"]
    assert isinstance(loaded.estimator_state, samplers.ShapeState)


def test_round_trip_of_array_leaves_in_state(tmp_path):
    state = trainer.TrainState([np.ones(2, np.int8)], (np.arange(3, dtype=np.float32), [1, 2.5, None]),
                               (updates.EmptyState(), np.array(7, np.int64)), 4, 24)
    checkpoint.save_checkpoint(tmp_path / "c", state, {})
    loaded, _ = checkpoint.load_checkpoint(tmp_path / "c", None)
    est, tx = loaded.estimator_state, loaded.transform_state
    assert est[0].dtype == np.float32 and np.array_equal(est[0], [0, 1, 2]) and est[1] == [1, 2.5, None]
    assert tx[0] == updates.EmptyState() and int(tx[1]) == 7 and (loaded.step, loaded.forward_passes) == (4, 24)


def test_resume_is_bit_exact(tmp_path):
    straight = trained(12)
    path = tmp_path / "mid.npz"
    checkpoint.save_checkpoint(path, trained(5), META)
    resumed_from, _ = checkpoint.load_checkpoint(path, META)
    resumed = trained(12, resumed_from)
    assert_same(resumed, straight)
    assert not np.array_equal(resumed.params[0], resumed_from.params[0])  # it really trained on


def test_overwrite_replaces_previous(saved):
    path, _ = saved
    newer = trained(7)
    checkpoint.save_checkpoint(path, newer, META)
    assert_same(checkpoint.load_checkpoint(path, META)[0], newer)


@pytest.mark.parametrize("where", ["savez", "fsync", "replace"])
def test_failed_save_keeps_old_file_and_leaves_no_temp(saved, monkeypatch, where):
    path, state = saved
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    if where == "savez":
        def partial(f, **arrays):
            f.write(b"PK\x03\x04 partial")
            boom()
        monkeypatch.setattr(checkpoint.np, "savez", partial)
    else:
        monkeypatch.setattr(checkpoint.os, where, boom)
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save_checkpoint(path, trained(7), META)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(path.parent) == ["ckpt.npz"]
    assert_same(checkpoint.load_checkpoint(path, META)[0], state)


def test_unserialisable_meta_keeps_old_file(saved):
    path, _ = saved
    before = path.read_bytes()
    with pytest.raises(TypeError):
        checkpoint.save_checkpoint(path, trained(1), {"bad": object()})
    assert path.read_bytes() == before and os.listdir(path.parent) == ["ckpt.npz"]


def test_truncated_file(saved):
    path, _ = saved
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt|not a"):
            checkpoint.load_checkpoint(path, META)


def test_random_bytes_and_empty_file(tmp_path):
    path = tmp_path / "junk.npz"
    for payload in (np.random.default_rng(0).bytes(4096), b""):
        path.write_bytes(payload)
        with pytest.raises(CheckpointError, match="Delete or move"):
            checkpoint.load_checkpoint(path, None)


def test_wrong_hash(saved):
    path, _ = saved
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["param_1"] = arrays["param_1"].copy()
    arrays["param_1"][0] ^= 1  # one flipped bit, header (and its sha256) kept
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="sha256"):
        checkpoint.load_checkpoint(path, META)


def test_tampered_meta_fails_hash(saved):
    path, _ = saved
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["header_json"] = np.array(str(arrays["header_json"]).replace('"seed": 3', '"seed": 4'))
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="sha256"):
        checkpoint.load_checkpoint(path, None)


@pytest.mark.parametrize("expected,field", [
    ({**META, "model_sha256": "cd" * 32}, "model_sha256"),
    ({**META, "param_shapes": [(4, 6), (3,)]}, "param_shapes"),
    ({"optimizer": "sgd"}, "optimizer"),
])
def test_mismatched_meta(saved, expected, field):
    path, _ = saved
    with pytest.raises(CheckpointError, match=f"different run or model.*{field}"):
        checkpoint.load_checkpoint(path, expected)
    checkpoint.load_checkpoint(path, {"param_shapes": [(4, 5), (3,)]})  # tuples match JSON lists


def test_plain_npz_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a tflite-fg checkpoint"):
        checkpoint.load_checkpoint(path, None)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.load_checkpoint(tmp_path / "nope.npz", None)


@pytest.mark.parametrize("overrides", [
    {"precision": "w16", "eps_lsb": 0.5, "momentum_alpha": 0.5, "sam_rho": 2.0, "kernel_norm": True,
     "mask": "topk", "sparsity": 0.5, "schedule": "cosine", "update_rounding": "stochastic",
     "engine_rounding": "stochastic"},
    {"arithmetic": "paper", "update_rounding": "stochastic", "schedule": "step", "schedule_every": 5},
    {"precision": "fp32", "eps_lsb": 0.5, "momentum_alpha": 0.3},
])
def test_resume_is_bit_exact_with_the_enhancements_states(tmp_path, overrides):
    # int16 / float32 master copies, MomentumState (a list of int8 history arrays), CountState
    from tflite_fg import build
    from tflite_fg.config import TrainConfig
    cfg = TrainConfig(steps=12, batch_size=1, m=2, lr=0.5, seed=1, **overrides)
    init = [np.arange(-30, 30, 3, dtype=np.int8).reshape(4, 5), np.array([5, -9, 12], np.int8)]
    space = build.build_space(cfg)
    est, tx = build.build_estimator(cfg, init, space), build.build_transform(cfg)
    history = list(trainer.fit(trainer.init_state(init, est, tx, space), lambda step: quadratic, est, tx,
                               cfg.seed, cfg.steps, space))
    path = tmp_path / "ckpt.npz"
    checkpoint.save_checkpoint(path, history[5][0], META)
    loaded, _ = checkpoint.load_checkpoint(path, META)
    assert [p.dtype for p in loaded.params] == [p.dtype for p in history[5][0].params]
    rest = list(trainer.fit(loaded, lambda step: quadratic, est, tx, cfg.seed, cfg.steps, space))
    final = history[-1][0]
    assert rest[-1][0].step == final.step and rest[-1][0].forward_passes == final.forward_passes
    assert all(np.array_equal(a, b) for a, b in zip(rest[-1][0].params, final.params))


def test_mismatch_names_only_the_differing_settings(tmp_path):
    path = tmp_path / "c.npz"
    config = {f"knob_{i}": i for i in range(40)}
    state = trainer.TrainState([np.zeros(3, np.int8)], (), (), 1, 6)
    checkpoint.save_checkpoint(path, state, {"config": config, "engine": "xnnpack"})
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_checkpoint(path, {"config": {**config, "knob_7": 8}, "engine": "builtin"})
    msg = str(err.value)
    assert "config.knob_7: checkpoint has 7, this run has 8" in msg and "engine: checkpoint has 'xnnpack'" in msg
    assert "knob_6" not in msg and len(msg) < 400


def test_a_setting_added_after_the_checkpoint_stands_for_its_default(tmp_path):
    path = tmp_path / "c.npz"
    state = trainer.TrainState([np.zeros(3, np.int8)], (), (), 1, 6)
    checkpoint.save_checkpoint(path, state, {"config": {"lr": 0.5}})  # written before `exact_head` existed
    absent = {"config.exact_head": False}
    assert checkpoint.load_checkpoint(path, {"config": {"lr": 0.5, "exact_head": False}}, absent)[0].step == 1
    with pytest.raises(CheckpointError, match="config.exact_head: checkpoint has False, this run has True"):
        checkpoint.load_checkpoint(path, {"config": {"lr": 0.5, "exact_head": True}}, absent)
    with pytest.raises(CheckpointError, match="config.exact_head: checkpoint has '<missing>'"):
        checkpoint.load_checkpoint(path, {"config": {"lr": 0.5, "exact_head": False}})

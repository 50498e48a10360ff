"""converters.benchmark and converters.suite: one benchmark cell on a real episode, every method."""
import dataclasses

import numpy as np
import pytest

from converters import benchmark, suite

MODE = benchmark.Mode("LP", "last:1")


@pytest.fixture(scope="module")
def episode(cache_dir):
    return suite.get_task("fmnist-fewshot").make_episode("5w5s", "test", 0, str(cache_dir))


@pytest.fixture(scope="module")
def converted(episode, tmp_path_factory):
    return benchmark.Converted(episode, MODE, tmp_path_factory.mktemp("bench"))


def test_episode_is_a_real_5_way_5_shot_task(episode):
    assert episode.x_train.shape == (25, 32, 32, 3) and episode.x_test.shape == (75, 32, 32, 3)
    assert len(episode.class_names) == 5 and (np.bincount(episode.y_train) == 5).all()
    assert 0.4 < benchmark.float_accuracy(episode) < 0.95  # the prototype head: well above chance 0.2


def test_cached_test_features_give_forward_accuracy(converted, episode):
    model = converted.model
    params = model.initial_params()
    direct = model.accuracy(model.quantize_input(episode.x_test), episode.y_test, params)
    assert converted.accuracy(params) == direct


def test_ff_int8_run_is_bit_reproducible_and_learns_the_training_set(converted):
    hp = benchmark.Hyper(lr=1.0, steps=60, batch_size=25)
    a = benchmark.run_ff_int8(converted, MODE, hp, "w16", seed=3)
    b = benchmark.run_ff_int8(converted, MODE, hp, "w16", seed=3)
    assert [p["acc"] for p in a.curve] == [p["acc"] for p in b.curve] and a.final_acc == b.final_acc
    assert a.forward_passes == 60 * 6 and len(a.curve) == benchmark.EVAL_POINTS
    assert [p["step"] for p in a.curve] == list(range(6, 61, 6))


def test_run_cell_runs_every_method_on_the_same_episode(episode):
    plan = {m: [benchmark.Hyper(lr=1e-3 if m.startswith("bp") else 0.5, steps=10, batch_size=25,
                                head_lr=0.3 if m in benchmark.EXACT_HEAD else 0.0)]
            for m in benchmark.TRAINED_METHODS}
    lines = []
    out = benchmark.run_cell(episode, MODE, plan, seed=0, log=lines.append)
    assert [r["method"] for r in out["runs"]] == list(benchmark.TRAINED_METHODS) and len(lines) == 7
    assert out["trainable_params"] == 64 * 5 and out["n_train"] == 25 and out["n_test"] == 75
    for r in out["runs"]:
        assert 0 <= r["final_acc"] <= 1 and r["curve"][-1]["step"] == 10
        # BP: one pass per step; the exact head alone (LP): one; FF: 2m = 6
        assert r["forward_passes"] == (10 if r["method"].startswith(("bp", "ffh")) else 60)
    with pytest.raises(ValueError, match="unknown methods"):
        benchmark.run_cell(episode, MODE, {"sgd": []})


def test_unit_key_covers_every_field():
    unit = suite.Unit("fmnist-fewshot", "5w5s", "LP", "val", 0, {"ff-w16": [{"lr": 0.5}]})
    assert unit.key() == suite.Unit("fmnist-fewshot", "5w5s", "LP", "val", 0, {"ff-w16": [{"lr": 0.5}]}).key()
    for change in ({"index": 1}, {"split": "test"}, {"plan": {"ff-w16": [{"lr": 0.25}]}}):
        assert dataclasses.replace(unit, **change).key() != unit.key()
    assert len({unit, suite.Unit(**dataclasses.asdict(unit))}) == 1
    assert unit.path("/r").endswith("fmnist-fewshot/5w5s/LP/val0.json")
    # a Hyper field at its default does not count: units run before it was added are reused
    assert dataclasses.replace(unit, plan={"ff-w16": [{"lr": 0.5, "estimator": "sign_spsa"}]}).key() == unit.key()
    assert dataclasses.replace(unit, plan={"ff-w16": [{"lr": 0.5, "estimator": "spsa"}]}).key() != unit.key()


def test_suite_specs_and_errors():
    assert set(suite.TASKS) == {"fmnist-fewshot", "vww-faces", "fmnist-c", "sounds-fewshot"}
    for spec in suite.TASKS.values():
        assert set(spec.grids) == set(benchmark.TRAINED_METHODS) and spec.episodes["val"] >= 1
        assert spec.hyper("bp-fp32", 1e-3).steps == spec.bp_steps and spec.hyper("ff-w8", 1.0, 0.2).steps == \
            round(spec.ff_steps * 0.2)
        head = spec.hyper("ffh-w16", 0.3)
        assert head.head_lr == 0.3 and head.lr == suite.EXACT_HEAD_BODY_LR["ffh-w16"] and head.grad_average == 0
        assert head.head_optimizer == "adam" and spec.hyper("ff-w16", 1.0).head_optimizer == "sgd"
        assert spec.hyper("ff-w8", 1.0).grad_average == 0.9  # the w8 recipe averages its estimates
        assert suite.grid_value("ffh-w16", dataclasses.asdict(head)) == 0.3
        head_only, body = [m.name for m in spec.modes if m.head_only], [m.name for m in spec.modes if not m.head_only]
        assert head_only and body and spec.hyper("ffh-w8", 0.3, mode=head_only[0]) == spec.hyper("ffh-w8", 0.3)
        ft = spec.hyper("ffh-w8", 4.0, mode=body[0])  # on a body mode the grid is the FF body's rate
        assert (ft.lr, ft.head_lr, ft.grad_average) == (4.0, 1.0, 0.9)  # w8's Adam head: 1 LSB per step
        assert spec.hyper("ffh-w16", 4.0, mode=body[0]).head_lr == 0.3
        dense = spec.grids["ff-w8"]  # the block-coordinate body's grid: 3x, and the dense grid's lowest below it
        assert spec.grid("ffh-w8", body[0]) == (dense[0],) + tuple(3 * r for r in dense)
        assert spec.grid("ffh-w8", head_only[0]) == spec.grids["ffh-w8"]
        assert ft.block_coordinate and not head.block_coordinate and not spec.hyper("ff-w8", 4.0, mode=body[0]).block_coordinate
        assert suite.grid_value("ffh-w8", dataclasses.asdict(ft), head_only=False) == 4.0
    with pytest.raises(ValueError, match="unknown task"):
        suite.get_task("cifar")
    with pytest.raises(ValueError, match="unknown mode"):
        suite.get_task("fmnist-fewshot").mode("full")
    with pytest.raises(ValueError, match="split"):
        suite.get_task("fmnist-fewshot").make_episode("5w5s", "train", 0, None)


def test_run_unit_reuses_the_runs_an_earlier_result_of_the_episode_holds(cache_dir):
    first, second = (dataclasses.asdict(benchmark.Hyper(lr=1.0, head_lr=r, steps=10, batch_size=25)) for r in (0.3, 0.1))
    unit = suite.Unit("fmnist-fewshot", "5w5s", "LP", "test", 1, {"ffh-w16": [first]})
    a = suite.run_unit(unit, str(cache_dir), log=lambda s: None)
    assert a["reused_runs"] == 0 and len(a["runs"]) == 1
    grown = dataclasses.replace(unit, plan={"ffh-w16": [first, second], "ff-w16": [first]})
    b = suite.run_unit(grown, str(cache_dir), log=lambda s: None, previous=a)
    assert b["reused_runs"] == 1 and b["runs"][0] == a["runs"][0] and b["key"] == grown.key()
    assert [(r["method"], r["hyper"]["head_lr"]) for r in b["runs"]] == [("ffh-w16", 0.3), ("ffh-w16", 0.1), ("ff-w16", 0.3)]
    # everything reusable: no conversion, the episode's zero-shot figures carried over
    c = suite.run_unit(dataclasses.replace(unit, plan={"ffh-w16": [second]}), None, log=lambda s: None, previous=b)
    assert c["reused_runs"] == 1 and c["runs"] == [b["runs"][1]] and c["zero_shot"] == b["zero_shot"]
    # a stored result whose graph turns out different (zero-shot differs): every method runs again, and
    # the same episode and seed give the same run
    stale = {**a, "zero_shot": {"fp32": 0.0, "int8": 0.0}}
    d = suite.run_unit(dataclasses.replace(unit, plan={"ffh-w16": [first, second]}), str(cache_dir), log=lambda s: None,
                       previous=stale)
    assert d["reused_runs"] == 0 and d["zero_shot"] == a["zero_shot"]
    assert [p["acc"] for p in d["runs"][0]["curve"]] == [p["acc"] for p in a["runs"][0]["curve"]]
    # another episode's runs are never taken
    other = suite.reusable_runs(dataclasses.replace(unit, index=2), a)
    assert other == {} and suite.reusable_runs(unit, {**a, "key": "stale"}) == {}

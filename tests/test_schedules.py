import math

import pytest

from tflite_fg import schedules


def test_constant():
    s = schedules.constant()
    assert [s(t) for t in (0, 1, 10**6)] == [1.0, 1.0, 1.0]


def test_cosine_boundaries():
    s = schedules.cosine(100)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.5, abs=1e-15)
    assert s(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))  # 0.853553
    assert s(100) == 0.0 and s(1000) == 0.0  # flat beyond T
    f = schedules.cosine(100, 0.1)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.55) and f(100) == pytest.approx(0.1) and f(500) == f(100)
    values = [s(t) for t in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone


def test_step_decay():
    s = schedules.step_decay(10, 0.5)
    assert [s(t) for t in (0, 9, 10, 19, 20, 35)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]
    assert schedules.step_decay(3, 1.0)(100) == 1.0


@pytest.mark.parametrize("make", [lambda: schedules.cosine(0), lambda: schedules.cosine(10, 1.5),
                                  lambda: schedules.cosine(10, -0.1), lambda: schedules.step_decay(0),
                                  lambda: schedules.step_decay(10, 0.0), lambda: schedules.step_decay(10, 2.0),
                                  lambda: schedules.make_schedule("linear", 10)])
def test_validation(make):
    with pytest.raises(ValueError):
        make()


def test_make_schedule():
    assert schedules.make_schedule("constant", 10)(5) == 1.0
    assert schedules.make_schedule("cosine", 10, 0.2)(10) == pytest.approx(0.2)
    assert schedules.make_schedule("step", 10, every=4, factor=0.1)(8) == pytest.approx(0.01)

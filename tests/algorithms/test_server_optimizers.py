"""Each server optimizer matches a step computed by hand (Reddi et al. 2021, Algorithm 2)."""

from __future__ import annotations

import numpy as np
import pytest

from fedmodel import ModelWeights
from fedmodel import server_optimizers as so
from fedmodel.algorithms import FederatedAlgorithm, delta
from fedmodel.client import local_sgd


def _w(*trainable: list[float], non_trainable: tuple[np.ndarray, ...] = ()) -> ModelWeights:
    return ModelWeights(tuple(np.array(t, np.float32) for t in trainable), non_trainable)


def _d(*values: list[float], non_trainable: tuple[np.ndarray, ...] = ()) -> ModelWeights:
    return ModelWeights(tuple(np.array(v, np.float64) for v in values), non_trainable)


def test_sgd_with_learning_rate_one_and_no_momentum_lands_exactly_on_the_average() -> None:
    params = _w([0.1, 0.7, -3.3])
    aggregated = _w([0.2, 0.6000001, 1e-7])
    opt = so.sgd(1.0)
    new, _ = opt.update(delta(params, aggregated), opt.init(params), params)
    np.testing.assert_array_equal(new.trainable[0], aggregated.trainable[0])


def test_sgd_momentum_two_steps_match_hand_computation() -> None:
    opt = so.sgd(learning_rate=0.1, momentum=0.9)
    params = _w([1.0, 2.0])
    state = opt.init(params)
    step = _d([0.5, -1.0])
    params, state = opt.update(step, state, params)  # b = [0.5, -1]; x = [1.05, 1.9]
    np.testing.assert_allclose(params.trainable[0], [1.05, 1.9], rtol=1e-6)
    params, state = opt.update(step, state, params)  # b = 0.9 b + d = [0.95, -1.9]; x += 0.1 b
    np.testing.assert_allclose(params.trainable[0], [1.145, 1.71], rtol=1e-6)
    np.testing.assert_allclose(state.momentum[0], [0.95, -1.9])
    assert params.trainable[0].dtype == np.float32


def test_adam_first_step_matches_algorithm_2() -> None:
    opt = so.adam(learning_rate=0.1)  # beta1 0.9, beta2 0.99, tau 1e-3
    params = _w([0.0, 0.0])
    new, state = opt.update(_d([1.0, -2.0]), opt.init(params), params)
    # m = 0.1 d; v = 0.99 tau^2 + 0.01 d^2; x = 0.1 m / (sqrt(v) + tau)
    want = [0.1 * 0.1 / (np.sqrt(0.99e-6 + 0.01) + 1e-3), 0.1 * -0.2 / (np.sqrt(0.99e-6 + 0.04) + 1e-3)]
    np.testing.assert_allclose(new.trainable[0], want, rtol=1e-6)
    np.testing.assert_allclose(state.m[0], [0.1, -0.2])
    np.testing.assert_allclose(state.v[0], [0.99e-6 + 0.01, 0.99e-6 + 0.04])


def test_adam_second_step_uses_decayed_moments() -> None:
    opt = so.adam(learning_rate=0.1)
    params = _w([0.0])
    state = opt.init(params)
    params, state = opt.update(_d([1.0]), state, params)
    first = float(params.trainable[0][0])
    params, state = opt.update(_d([1.0]), state, params)
    m2 = 0.9 * 0.1 + 0.1  # 0.19
    v2 = 0.99 * (0.99e-6 + 0.01) + 0.01
    np.testing.assert_allclose(params.trainable[0], [first + 0.1 * m2 / (np.sqrt(v2) + 1e-3)], rtol=1e-6)


def test_yogi_grows_v_additively_while_delta_squared_exceeds_it() -> None:
    opt = so.yogi(learning_rate=0.1)
    params = _w([0.0])
    state = opt.init(params)
    params, state = opt.update(_d([1.0]), state, params)
    np.testing.assert_allclose(state.v[0], [1e-6 + 0.01])  # v - 0.01 * 1 * sign(1e-6 - 1)
    params, state = opt.update(_d([1.0]), state, params)
    np.testing.assert_allclose(state.v[0], [1e-6 + 0.02])
    np.testing.assert_allclose(state.m[0], [0.19])


def test_yogi_shrinks_v_when_it_exceeds_delta_squared() -> None:
    opt = so.yogi(learning_rate=0.1)
    params = _w([0.0])
    state = so.AdaptiveState((np.zeros(1),), (np.ones(1),))
    new, state = opt.update(_d([0.5]), state, params)
    np.testing.assert_allclose(state.v[0], [1.0 - 0.01 * 0.25])
    np.testing.assert_allclose(new.trainable[0], [0.1 * 0.05 / (np.sqrt(0.9975) + 1e-3)], rtol=1e-6)


def test_adagrad_accumulates_squares_without_decay() -> None:
    opt = so.adagrad(learning_rate=0.5)
    params = _w([0.0, 0.0])
    state = opt.init(params)
    params, state = opt.update(_d([1.0, 3.0]), state, params)
    params, state = opt.update(_d([2.0, 0.0]), state, params)
    np.testing.assert_allclose(state.v[0], [1e-6 + 1 + 4, 1e-6 + 9])
    m2 = np.array([0.9 * 0.1 + 0.2, 0.9 * 0.3])
    m1 = np.array([0.1, 0.3])
    x1 = 0.5 * m1 / (np.sqrt([1e-6 + 1, 1e-6 + 9]) + 1e-3)
    np.testing.assert_allclose(params.trainable[0], x1 + 0.5 * m2 / (np.sqrt([1e-6 + 5, 1e-6 + 9]) + 1e-3), rtol=1e-6)


@pytest.mark.parametrize("make", [so.adam, so.yogi, so.adagrad, lambda: so.sgd(0.5, momentum=0.9)])
def test_integer_and_non_trainable_variables_take_the_aggregated_value(make: object) -> None:
    opt = make()  # type: ignore[operator]
    params = _w([1.0], non_trainable=(np.array([3], np.int64), np.array([0.5], np.float32)))
    aggregated = _w([2.0], non_trainable=(np.array([5], np.int64), np.array([0.25], np.float32)))
    new, _ = opt.update(delta(params, aggregated), opt.init(params), params)
    np.testing.assert_array_equal(new.non_trainable[0], [5])
    assert new.non_trainable[0].dtype == np.int64
    np.testing.assert_array_equal(new.non_trainable[1], [0.25])
    assert not np.array_equal(new.trainable[0], aggregated.trainable[0])


def test_state_round_trips_through_a_dict_of_arrays() -> None:
    opt = so.adam(0.1)
    params = _w([1.0, 2.0], [3.0])
    _, state = opt.update(_d([1.0, 1.0], [2.0]), opt.init(params), params)
    arrays = so.state_to_arrays(state)
    assert sorted(arrays) == ["m/0", "m/1", "v/0", "v/1"]
    back = so.state_from_arrays(opt.init(params), arrays)
    for a, b in zip(back.m + back.v, state.m + state.v, strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_from_arrays_rejects_a_wrong_shape() -> None:
    opt = so.sgd(1.0, momentum=0.9)
    like = opt.init(_w([1.0, 2.0]))
    with pytest.raises(ValueError, match="momentum/0"):
        so.state_from_arrays(like, {"momentum/0": np.zeros(3)})


def test_a_recombined_algorithm_uses_its_server_optimizer() -> None:
    algo = FederatedAlgorithm("custom", local_sgd(), so.adam(0.1))
    state = algo.init(_w([0.0]))
    state = algo.apply(state, _w([1.0]))
    np.testing.assert_allclose(state.weights.trainable[0], [0.1 * 0.1 / (np.sqrt(0.99e-6 + 0.01) + 1e-3)], rtol=1e-6)
    assert state.round == 1
    assert not state.weights.trainable[0].flags.writeable

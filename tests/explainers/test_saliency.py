"""Saliency: known answers (linear weights, completeness) and a contract table over every registered method."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data_adapters.errors import ExplainerError, InvalidInputError, UnknownNameError
from explainers.saliency import SALIENCY_METHODS, explain, explain_layer
from tests.helpers import LinearModel, TinyCNN, all_hooks, handle_for

RNG = np.random.default_rng(0)
SHAPES = {2: (1, 12, 12), 3: (2, 6, 8, 8)}
FAST = {"integrated_gradients": {"n_steps": 8}, "smoothgrad": {"samples": 4}, "gradient_shap": {"samples": 4},
        "occlusion": {"window": 4, "stride": 4}}


def images(shape, n=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("task,n_out", [("multiclass", 3), ("multilabel", 3)])
def test_saliency_of_a_linear_model_is_its_weights(task, n_out):
    model = LinearModel((1, 5, 5), n_out)
    handle = handle_for(model, task=task, n_classes=n_out, input_shape=(1, 5, 5))
    x = images((1, 5, 5), n=2)
    for k in range(n_out):
        maps = explain(handle, x, ["a", "b"], "saliency", k)
        expected = model.linear.weight[k].detach().reshape(1, 5, 5).numpy()
        for m in maps:
            np.testing.assert_allclose(m.array, expected, rtol=1e-6, atol=1e-6)


def test_binary_model_class_zero_is_the_negated_logit():
    model = LinearModel((1, 4, 4), 1)
    handle = handle_for(model, task="binary", input_shape=(1, 4, 4))
    x = images((1, 4, 4), n=1)
    w = model.linear.weight[0].detach().reshape(1, 4, 4).numpy()
    np.testing.assert_allclose(explain(handle, x, ["a"], "saliency", 1)[0].array, w, atol=1e-6)
    np.testing.assert_allclose(explain(handle, x, ["a"], "saliency", "negative")[0].array, -w, atol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_integrated_gradients_are_complete(dims):
    """Sundararajan et al.'s completeness: the map sums to score(x) - score(0), within 1% with 64 steps."""
    handle = handle_for(TinyCNN(dims, SHAPES[dims][0], 3), n_classes=3, input_shape=SHAPES[dims])
    x = images(SHAPES[dims], n=4)
    maps = explain(handle, x, list("abcd"), "integrated_gradients", 2, {"n_steps": 64})
    with torch.no_grad():
        gap = (handle.module(torch.from_numpy(x))[:, 2] - handle.module(torch.zeros(1, *SHAPES[dims]))[:, 2]).numpy()
    sums = np.array([m.array.sum() for m in maps])
    np.testing.assert_allclose(sums, gap, rtol=0.01, atol=1e-4)
    assert all(abs(m.convergence_delta) <= 0.01 * abs(g) + 1e-4 for m, g in zip(maps, gap))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("method", SALIENCY_METHODS.names())
def test_contract_every_method(method, dims):
    """Keeps the spatial shape, is deterministic, leaves no hook, depends on the target, rejects a bad one."""
    shape = SHAPES[dims]
    model = TinyCNN(dims, shape[0], 3)
    handle = handle_for(model, n_classes=3, input_shape=shape)
    x = images(shape, n=3)
    first = explain(handle, x, list("abc"), method, 1, FAST.get(method))
    again = explain(handle, x, list("abc"), method, 1, FAST.get(method))
    other = explain(handle, x, list("abc"), method, 2, FAST.get(method))
    for a, b, c in zip(first, again, other):
        assert a.array.shape[1:] == shape[1:] and a.array.shape[0] in (1, shape[0])
        assert a.array.dtype == np.float32 and np.isfinite(a.array).all()
        np.testing.assert_allclose(a.array, b.array, rtol=1e-5, atol=1e-7)
        assert a.method == method and a.target == 1 and a.seconds >= 0
        assert not np.allclose(a.array, c.array), "the map must depend on the target class"
    assert np.abs(first[0].array).sum() > 0
    assert all_hooks(model) == 0
    with pytest.raises(InvalidInputError, match=r"target 3 is not a class; classes are 0='class0'"):
        explain(handle, x, list("abc"), method, 3)
    assert all_hooks(model) == 0


@pytest.mark.parametrize("method", SALIENCY_METHODS.names())
def test_no_hook_left_after_an_error_inside_the_model(method):
    class Exploding(TinyCNN):
        def forward(self, x):
            super().forward(x)
            raise RuntimeError("boom")

    model = Exploding(2, 1, 3)
    handle = handle_for(model, n_classes=3, input_shape=(1, 12, 12))
    with pytest.raises(RuntimeError, match="boom"):
        explain(handle, images((1, 12, 12)), list("abc"), method, 0, FAST.get(method))
    assert all_hooks(model) == 0


def test_batching_gives_the_same_maps_as_one_case_at_a_time():
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    x = images((1, 12, 12), n=5)
    together = explain(handle, x, list("abcde"), "integrated_gradients", 0, {"n_steps": 16}, case_batch=5)
    alone = explain(handle, x, list("abcde"), "integrated_gradients", 0, {"n_steps": 16}, case_batch=1)
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.array, b.array, rtol=1e-4, atol=1e-6)


def test_unknown_method_and_parameter_get_suggestions():
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    with pytest.raises(UnknownNameError, match=r"unknown saliency method 'gradcam' \(did you mean 'grad_cam'"):
        explain(handle, images((1, 12, 12)), list("abc"), "gradcam", 0)
    with pytest.raises(UnknownNameError, match=r"integrated_gradients has no parameter 'steps' \(did you mean 'n_steps'"):
        explain(handle, images((1, 12, 12)), list("abc"), "integrated_gradients", 0, {"steps": 4})
    with pytest.raises(InvalidInputError, match=r"parameter 'n_steps' must be int, got 'many'"):
        explain(handle, images((1, 12, 12)), list("abc"), "integrated_gradients", 0, {"n_steps": "many"})


def test_layer_methods_refuse_torchscript_and_unknown_layers():
    scripted = torch.jit.script(TinyCNN(2, 1, 3))
    handle = handle_for(scripted, n_classes=3, input_shape=(1, 12, 12))
    for layered in (handle, handle_for(scripted, n_classes=3, input_shape=(1, 12, 12), explain_layer="features.2")):
        # said once, with the remedy, whether or not explain_layer is set (it cannot help a TorchScript model)
        with pytest.raises(ExplainerError, match="is TorchScript: layer methods .* whatever explain_layer says; "
                                                 "use an input-gradient method"):
            explain(layered, images((1, 12, 12)), list("abc"), "grad_cam", 0)
        with pytest.raises(ExplainerError, match="is TorchScript"):
            explain_layer(layered)
    assert explain(handle, images((1, 12, 12)), list("abc"), "saliency", 0)[0].array.shape == (1, 12, 12)
    bad = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12), explain_layer="features.9")
    with pytest.raises(UnknownNameError, match=r"has no layer 'features.9' \(did you mean"):
        explain(bad, images((1, 12, 12)), list("abc"), "grad_cam", 0)


def test_default_explain_layer_is_the_last_convolution():
    assert explain_layer(handle_for(TinyCNN(3, 1, 3), input_shape=(1, 6, 8, 8))) == "features.2"


@pytest.mark.parametrize("method", SALIENCY_METHODS.names())
def test_every_method_cites_its_paper_and_randomised_ones_take_a_seed(method):
    cls = SALIENCY_METHODS.get(method)
    assert cls.title and cls.citation
    assert cls.randomised == ("seed" in cls.defaults)

"""The determinism contract: a case's result depends on the case, never on its batch, and dropout is sampled with
each layer's own semantics. Generated from the saliency and uncertainty registries, so a new method is held to
it the day it is added."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from explainers.saliency import SALIENCY_METHODS, explain
from explainers.uncertainty import DROPOUT_FUNCTIONS, UNCERTAINTY_METHODS, sample_dropout
from tests.helpers import TinyCNN, handle_for, random_png_cohort

FAST = {"integrated_gradients": {"n_steps": 8}, "smoothgrad": {"samples": 4}, "gradient_shap": {"samples": 4},
        "occlusion": {"window": 4, "stride": 4}}


class ChannelDropoutCNN(TinyCNN):
    """TinyCNN with a channel dropout (as MONAI's DenseNet has) between features and head."""

    def __init__(self, seed: int = 0):
        super().__init__(2, 1, 3, seed=seed)
        self.drop = torch.nn.Dropout2d(0.3)

    def forward(self, x):
        return self.head(self.drop(self.features(x)).flatten(2).mean(dim=2))


@pytest.mark.parametrize("method", SALIENCY_METHODS.names())
def test_a_case_gets_the_same_map_alone_or_in_any_batch(method):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    rng = np.random.default_rng(0)
    case = rng.normal(size=(1, 1, 12, 12)).astype(np.float32)
    others = rng.normal(size=(3, 1, 12, 12)).astype(np.float32)
    params = FAST.get(method)
    alone = explain(handle, case, ["c"], method, 1, params)[0].array
    batch = np.concatenate([others[:2], case, others[2:]])  # the case third in a batch of four
    within = explain(handle, batch, ["a", "b", "c", "d"], method, 1, params)[2].array
    scale = float(np.abs(alone).max()) or 1.0
    # float rounding of batched kernels only (measured below 1e-6 of the map's scale)
    np.testing.assert_allclose(within, alone, atol=1e-5 * scale, err_msg=method)


@pytest.mark.parametrize("method", UNCERTAINTY_METHODS.names())
def test_a_case_gets_the_same_uncertainty_alone_or_in_any_batch(method, tmp_path):
    cohort = random_png_cohort(tmp_path, 5, size=12)
    handles = [handle_for(ChannelDropoutCNN(seed=s), n_classes=3, input_shape=(1, 12, 12)) for s in (0, 1)]
    run = UNCERTAINTY_METHODS.get(method)
    alone = run(handles, cohort.cases[2:3], 6, 3, None)[:, 0]
    within = run(handles, cohort.cases, 6, 3, None)[:, 2]
    shifted = run(handles, cohort.cases[1:], 6, 3, None)[:, 1]
    np.testing.assert_allclose(within, alone, atol=1e-6, err_msg=method)
    np.testing.assert_allclose(shifted, alone, atol=1e-6, err_msg=method)
    if method != "ensemble":
        assert np.ptp(alone, axis=0).max() > 1e-4, f"{method} must draw different samples"


@pytest.mark.parametrize("cls,shape", [(torch.nn.Dropout, (1, 6, 5, 5)), (torch.nn.Dropout1d, (1, 6, 9)),
                                       (torch.nn.Dropout2d, (1, 6, 5, 5)), (torch.nn.Dropout3d, (1, 6, 3, 4, 4)),
                                       (torch.nn.AlphaDropout, (1, 6, 5, 5)),
                                       (torch.nn.FeatureAlphaDropout, (1, 6, 5, 5))])
def test_each_dropout_class_is_sampled_exactly_as_the_module_in_train_mode(cls, shape):
    module = cls(0.4)
    x = torch.randn(shape) + 2.0
    ours = sample_dropout(module, x, [1234])
    torch.manual_seed(1234)
    module.train()
    reference = module(x)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    assert not torch.equal(ours, x), "dropout must change something"
    assert {c for c, _ in DROPOUT_FUNCTIONS} >= {cls}


def test_channel_dropout_drops_whole_channels_and_its_spread_is_the_modules():
    """Dropout2d zeroes whole feature maps: element-wise dropout in its place would average out over a map and
    report a spread several times too small (measured 5.6x on a real chest model)."""
    module = torch.nn.Dropout2d(0.5)
    x = torch.ones(1, 64, 8, 8)
    out = sample_dropout(module, x, [7])
    per_channel = out.flatten(2)
    assert ((per_channel == 0).all(dim=2) | (per_channel == 2.0).all(dim=2)).all(), "channels kept or dropped whole"
    means = torch.stack([sample_dropout(module, x, [s]).mean() for s in range(200)])
    elementwise = torch.stack([torch.nn.functional.dropout(x, 0.5, True).mean() for _ in range(200)])
    assert means.std() > 4 * elementwise.std(), (float(means.std()), float(elementwise.std()))

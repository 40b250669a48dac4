"""Model loaders: state dict + MONAI spec, TorchScript, and the refusals (pickles, misfits, unknown names)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.nets import DenseNet

from data_adapters.errors import ModelError, UnknownNameError
from data_adapters.models import load_model, write_spec
from tests.helpers import TinyCNN

NET = {"name": "DenseNet", "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": 3, "init_features": 4,
                                     "growth_rate": 4, "block_config": [1, 1], "bn_size": 2, "dropout_prob": 0.1}}


def spec(**over):
    base = {"name": "tiny", "version": "v9", "format": "state_dict", "weights": "weights.pt", "network": NET,
            "task": "multiclass", "class_names": ["a", "b", "c"],
            "preprocessing": {"in_channels": 1, "spatial_size": [32, 32], "intensity": "zscore"},
            "card": {"intended_use": "tests", "limitations": ["tiny"], "owner": "qa"}}
    return {**base, **over}


@pytest.fixture
def state_dict_model(tmp_path):
    torch.manual_seed(0)
    net = DenseNet(**NET["args"])
    folder = tmp_path / "m"
    folder.mkdir()
    torch.save(net.state_dict(), folder / "weights.pt")
    write_spec(folder, spec())
    return folder, net


def test_state_dict_with_monai_spec(state_dict_model):
    folder, net = state_dict_model
    handle = load_model(folder)
    assert handle.label == "tiny v9" and handle.n_classes == 3 and handle.spatial_dims == 2
    assert handle.card.intended_use == "tests" and handle.card.limitations == ("tiny",)
    assert handle.card.extra == {"owner": "qa"}
    assert not handle.module.training and not any(p.requires_grad for p in handle.module.parameters())
    assert not any(getattr(m, "inplace", False) for m in handle.module.modules() if isinstance(m, torch.nn.ReLU))
    x = torch.randn(2, 1, 32, 32)
    net.eval()
    torch.testing.assert_close(handle.module(x), net(x))
    assert load_model(folder / "model.json").weights_hash == handle.weights_hash


def test_weights_hash_follows_content(state_dict_model):
    folder, net = state_dict_model
    before = load_model(folder).weights_hash
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    torch.save(net.state_dict(), folder / "weights.pt")
    assert load_model(folder).weights_hash != before


def test_pickled_full_model_is_refused_with_the_reason(state_dict_model):
    folder, net = state_dict_model
    torch.save(net, folder / "weights.pt")  # a whole pickled module, not a state dict
    with pytest.raises(ModelError, match=r"weights\.pt: holds a pickled Python object .* unpickling can run "
                                         r"arbitrary code; it loads weights with weights_only=True"):
        load_model(folder)
    write_spec(folder, spec(format="torchscript"))
    with pytest.raises(ModelError, match="holds a pickled Python object"):
        load_model(folder)


def test_torchscript(tmp_path):
    module = TinyCNN(2, 1, 3)
    folder = tmp_path / "ts"
    folder.mkdir()
    torch.jit.script(module).save(str(folder / "model.ts"))
    write_spec(folder, spec(format="torchscript", weights="model.ts",
                            preprocessing={"in_channels": 1, "spatial_size": [12, 12]}))
    handle = load_model(folder)
    x = torch.randn(1, 1, 12, 12)
    np.testing.assert_allclose(handle.module(x).detach().numpy(), module.eval()(x).detach().numpy(), rtol=1e-5)


def test_misfits_and_unknown_names(state_dict_model):
    folder, _ = state_dict_model
    write_spec(folder, spec(network={**NET, "name": "DenseNet12"}))
    with pytest.raises(UnknownNameError, match=r"network 'DenseNet12' is not a class of monai.networks.nets "
                                               r"\(did you mean 'DenseNet121'"):
        load_model(folder)
    write_spec(folder, spec(format="onnx"))
    with pytest.raises(UnknownNameError, match=r"unknown model format 'onnx'; known: monai_bundle, state_dict, torchscript"):
        load_model(folder)
    write_spec(folder, spec(class_names=["a", "b"]))
    with pytest.raises(ModelError, match=r"a multiclass model with classes \('a', 'b'\) must output \(batch, 2\) "
                                         r"logits, got \(1, 3\)"):
        load_model(folder)
    write_spec(folder, spec(network={**NET, "args": {**NET["args"], "init_features": 8}}))
    with pytest.raises(ModelError, match=r"weights do not fit network DenseNet"):
        load_model(folder)
    write_spec(folder, spec(task="regression"))
    with pytest.raises(ModelError, match=r"task 'regression' is not one of \('binary', 'multiclass', 'multilabel'\)"):
        load_model(folder)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"model\.json: not valid JSON"):
        load_model(folder)
    with pytest.raises(ModelError, match=r"no model\.json here"):
        load_model(folder.parent / "elsewhere")
    write_spec(folder, {k: v for k, v in spec().items() if k != "class_names"})
    with pytest.raises(ModelError, match=r"missing field 'class_names'"):
        load_model(folder)

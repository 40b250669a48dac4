"""MONAI bundles: network and preprocessing from the bundle's own configs, and config code runs only for bundles
under the configured model roots."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydicom.data import get_testdata_file

from data_adapters.errors import ModelError
from data_adapters.models.state_dict import monai_network
from explainers.inference import predict_cases
from workspace.store import Workspace

NET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "init_features": 4, "growth_rate": 4,
       "block_config": [1, 1], "bn_size": 2}


def write_bundle(folder: Path, network_def=None, outputs=None) -> dict:
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    meta = {"name": "toy chest classifier", "version": "0.3.1", "description": "Flags abnormal CT slices (toy).",
            "authors": "Glassbox tests", "references": ["Toy et al. 2026"],
            "network_data_format": {
                "inputs": {"image": {"type": "image", "format": "hounsfield", "num_channels": 1,
                                     "spatial_shape": [32, 32], "dtype": "float32", "is_patch_data": False}},
                "outputs": outputs or {"pred": {"type": "probabilities", "format": "classes", "num_channels": 2,
                                                "spatial_shape": [], "channel_def": {"0": "normal", "1": "abnormal"}}}}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    config = {
        "bundle_root": ".",
        "network_def": network_def or {"_target_": "monai.networks.nets.DenseNet", **NET},
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": "$400 + 600",
             "b_min": 0.0, "b_max": 1.0, "clip": True},
            {"_target_": "Resized", "keys": "image", "spatial_size": [32, 32]}]},
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    state = monai_network("DenseNet")(**NET).state_dict()
    torch.save(state, folder / "models" / "model.pt")
    return state


def test_a_bundle_in_the_workspace_loads_with_its_own_network_and_preprocessing(tmp_path):
    ws = Workspace(tmp_path / "ws")
    state = write_bundle(ws.root / "models" / "toy_bundle")
    assert list(ws.model_paths()) == ["toy_bundle"]
    handle = ws.load_model(ws.model_paths()["toy_bundle"])
    assert (handle.name, handle.version, handle.task) == ("toy chest classifier", "0.3.1", "multiclass")
    assert handle.class_names == ("normal", "abnormal")
    pre = handle.preprocessing
    assert (pre.in_channels, pre.spatial_size, pre.intensity, pre.intensity_range, pre.resize) == (
        1, (32, 32), "range", (-1000.0, 1000.0, 0.0, 1.0), True), "the '$400 + 600' expression is evaluated"
    loaded = handle.module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items()), "weights come from models/model.pt"
    assert "Toy et al. 2026" in handle.card.extra["references"]
    # a real CT slice (128²) goes through the bundle's declared resize and HU window
    folder = tmp_path / "ct"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    cohort = ws.load_cohort(folder, class_names=handle.class_names, input_shape=pre.accepts)
    (p,) = predict_cases(handle, cohort.cases)
    assert abs(sum(p.probabilities) - 1) < 1e-6


def test_a_bundle_outside_the_model_roots_is_refused_before_its_config_runs(tmp_path):
    witness = tmp_path / "config_code_ran"
    network_def = f"$__import__('pathlib').Path(r'{witness}').touch() or monai.networks.nets.DenseNet(" + \
        ", ".join(f"{k}={v!r}" for k, v in NET.items()) + ")"
    outside = tmp_path / "downloads" / "bundle"
    write_bundle(outside, network_def=network_def)
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(ModelError, match=r"is a MONAI bundle outside the configured model roots .* can instantiate "
                                         r"any Python class .* add its parent folder to \"model_roots\" in .*settings"):
        ws.load_model(outside)
    assert not witness.exists(), "nothing in an untrusted bundle may run"
    ws.root.mkdir(parents=True, exist_ok=True)
    (ws.root / "settings.json").write_text(json.dumps({"model_roots": [str(outside.parent)]}))
    assert ws.load_model(outside).class_names == ("normal", "abnormal")
    assert witness.exists(), "a trusted bundle's config is code, and runs"


def test_segmentation_bundles_and_bad_weights_are_refused_with_the_reason(tmp_path):
    ws = Workspace(tmp_path / "ws")
    write_bundle(ws.root / "models" / "seg", outputs={"pred": {"type": "image", "format": "segmentation",
                                                               "num_channels": 2, "spatial_shape": [32, 32]}})
    with pytest.raises(ModelError, match=r"a segmentation bundle .* Glassbox reviews classifiers"):
        ws.load_model(ws.root / "models" / "seg")
    write_bundle(ws.root / "models" / "bad", network_def={"_target_": "monai.networks.nets.DenseNet",
                                                          **{**NET, "init_features": 8}})
    with pytest.raises(ModelError, match=r"model\.pt: weights do not fit the bundle's network_def"):
        ws.load_model(ws.root / "models" / "bad")

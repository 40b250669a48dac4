"""Build the demo workspace: a generated 2D cohort with two trained model versions, a generated 3D CT cohort with
one 3D version, and their cached predictions. Idempotent."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from data_adapters.cohort import load_manifest
from data_adapters.demo.dicom_export import export_studies
from data_adapters.demo.synthesis import (
    MARKER_BOX,
    N_CASES,
    generate_cohort,
    write_concepts,
)
from data_adapters.demo.training import (
    EPOCHS_3D,
    EXPLAIN_LAYER,
    EXPLAIN_LAYER_3D,
    NETWORK,
    NETWORK_3D,
    PREPROCESSING,
    PREPROCESSING_3D,
    train_version,
)
from data_adapters.demo.volumes import N_VOLUMES, SHAPE, SPACING, generate_ct_cohort
from data_adapters.models import load_model, write_spec
from workspace.store import Workspace

#: bump when the generator or training changes, so that old demo workspaces are rebuilt
DEMO_VERSION = 10
COHORT = "demo2d"
COHORT_3D = "demo3d"
#: the first held-out 3D volumes again, as a folder of DICOM studies (series of slices, identifiers in the tags)
COHORT_3D_DICOM = "demo3d_dicom"
N_DICOM_STUDIES = 24
MODEL_3D = "ct3d-v1"
StepProgress = Callable[[str], Callable[[int, int], None] | None]

TRAINING_DATA = ("Glassbox demo cohort 'demo2d', training split ({n} synthetic 128x128 radiographs from sites A, B, "
                 "C; seeded). Site B burns a corner token into most positive and few negative images.")
VERSIONS = {
    "v1": dict(randomise_marker=False, card={
        "intended_use": "Demonstration only: flags a synthetic lesion on generated 2D radiographs. Not for "
                        "clinical use.",
        "limitations": ["Trained plainly: free to learn site B's corner marker as a shortcut for the label.",
                        "Synthetic data; no real patients; three simulated sites only."],
        "training": "plain: 30 epochs AdamW, one-cycle schedule, seed 7"}),
    "v2": dict(randomise_marker=True, card={
        "intended_use": "Demonstration only: flags a synthetic lesion on generated 2D radiographs. Not for "
                        "clinical use.",
        "limitations": ["Synthetic data; no real patients; three simulated sites only.",
                        "Marker randomised in training; other site effects (contrast, noise) remain."],
        "training": "marker randomised: pasted on half of each batch, erased from the rest; otherwise as v1"}),
}


CARD_3D = {
    "intended_use": "Demonstration only: flags a synthetic lung nodule on generated 3D chest CT volumes. Not for "
                    "clinical use.",
    "training_data": ("Glassbox demo cohort 'demo3d', training split ({n} synthetic {shape} CT volumes, "
                      "{spacing} mm voxels, two sites; seeded)."),
    "limitations": ["Synthetic data; no real patients; two simulated scanners only.",
                    "Small volumes at coarse spacing: nodules under ~6 mm are not represented."],
    "training": f"plain: {EPOCHS_3D} epochs AdamW, one-cycle schedule, seed 7",
}


def _spec(version: str, name: str, network: dict, pre, layer: str, card: dict) -> dict:
    return {"name": name, "version": version, "format": "state_dict", "weights": "weights.pt", "network": network,
            "task": "binary", "class_names": ["no lesion", "lesion"],
            "preprocessing": {"in_channels": pre.in_channels, "spatial_size": list(pre.spatial_size),
                              "intensity": pre.intensity},
            "explain_layer": layer, "card": card}


def _train(folder: Path, cohort, spec: dict, step: StepProgress, **how) -> None:
    net, facts = train_version(cohort, progress=step(f"training {folder.name}"), **how)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "weights.pt")
    spec["card"]["final_training_loss"] = facts["final_loss"]
    write_spec(folder, spec)


def demo_is_built(root: Path) -> bool:
    stamp = root / "demo.json"
    return stamp.is_file() and json.loads(stamp.read_text()).get("version") == DEMO_VERSION


def build_demo(root: str | Path, *, force: bool = False, step: StepProgress | None = None,
               log: Callable[[str], None] = print) -> Path:
    """Create (or reuse) the demo workspace at ``root``; returns ``root``."""
    root = Path(root)
    step = step or (lambda _name: None)
    if demo_is_built(root) and not force:
        log(f"demo workspace at {root} is up to date; reusing it")
        return root
    if (root / "demo.json").is_file():
        force = True  # built by another generator version: nothing in it can be trusted to match
    ws = Workspace(root)
    manifest = root / "cohorts" / COHORT / "manifest.csv"
    if force or not manifest.is_file():
        generate_cohort(manifest.parent, progress=step(f"generating {N_CASES} cases"))
    else:
        log(f"reusing cohort {manifest}")
    if force or not (manifest.parent / "concepts").is_dir():
        write_concepts(manifest.parent / "concepts", manifest)
    cohort = load_manifest(manifest, progress=step("loading cohort"))
    log(cohort.report.summary())
    n_train = sum(c.attributes.get("split") == "train" for c in cohort.cases)
    for version, how in VERSIONS.items():
        folder = root / "models" / version
        if (folder / "model.json").is_file() and not force:
            log(f"reusing model {version}")
            continue
        card = {**how["card"], "training_data": TRAINING_DATA.format(n=n_train)}
        _train(folder, cohort, _spec(version, "demo lesion detector", NETWORK, PREPROCESSING, EXPLAIN_LAYER, card),
               step, randomise_marker=how["randomise_marker"])

    manifest_3d = root / "cohorts" / COHORT_3D / "manifest.csv"
    if force or not manifest_3d.is_file():
        generate_ct_cohort(manifest_3d.parent, progress=step(f"generating {N_VOLUMES} CT volumes"))
    cohort_3d = load_manifest(manifest_3d, progress=step("loading 3D cohort"))
    log(cohort_3d.report.summary())
    dicom_copy = root / "cohorts" / COHORT_3D_DICOM
    if force or not dicom_copy.is_dir():
        held_out = [c for c in cohort_3d.cases if c.attributes.get("split") == "test"]
        export_studies(held_out, dicom_copy, spacing=SPACING, n=N_DICOM_STUDIES,
                       progress=step(f"writing {N_DICOM_STUDIES} held-out volumes as DICOM studies"))
    folder = root / "models" / MODEL_3D
    if force or not (folder / "model.json").is_file():
        n = sum(c.attributes.get("split") == "train" for c in cohort_3d.cases)
        card = {**CARD_3D, "training_data": CARD_3D["training_data"].format(
            n=n, shape="×".join(map(str, SHAPE)), spacing="×".join(f"{s:g}" for s in SPACING))}
        _train(folder, cohort_3d, _spec("3d-v1", "demo nodule detector (3D CT)", NETWORK_3D, PREPROCESSING_3D,
                                        EXPLAIN_LAYER_3D, card),
               step, network=NETWORK_3D, preprocessing=PREPROCESSING_3D, epochs=EPOCHS_3D)

    for version, folder in ws.model_paths().items():
        handle = load_model(folder)
        target = cohort_3d if handle.spatial_dims == 3 else cohort
        ws.predictions(handle, target, progress=step(f"predicting with {version}"))
        ws.uncertainty([handle], target, "mc_dropout", progress=step(f"MC dropout for {version}"))
    (root / "demo.json").write_text(json.dumps({
        "version": DEMO_VERSION, "cohort": COHORT, "models": list(VERSIONS),
        "cohort_3d": COHORT_3D, "model_3d": MODEL_3D,
        "marker_box": [[MARKER_BOX[0].start, MARKER_BOX[0].stop], [MARKER_BOX[1].start, MARKER_BOX[1].stop]],
    }, indent=2))
    log(f"demo workspace ready at {root}")
    return root

"""Build the demo workspace: generated cohort, two trained model versions, cached predictions. Idempotent."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from data_adapters.cohort import load_manifest
from data_adapters.demo.synthesis import (
    MARKER_BOX,
    N_CASES,
    generate_cohort,
    write_concepts,
)
from data_adapters.demo.training import (
    EXPLAIN_LAYER,
    NETWORK,
    PREPROCESSING,
    train_version,
)
from data_adapters.models import load_model, write_spec
from workspace.store import Workspace

#: bump when the generator or training changes, so that old demo workspaces are rebuilt
DEMO_VERSION = 6
COHORT = "demo2d"
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
        net, facts = train_version(cohort, randomise_marker=how["randomise_marker"],
                                   progress=step(f"training {version}"))
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), folder / "weights.pt")
        write_spec(folder, {
            "name": "demo lesion detector", "version": version, "format": "state_dict", "weights": "weights.pt",
            "network": NETWORK, "task": "binary", "class_names": ["no lesion", "lesion"],
            "preprocessing": {"in_channels": PREPROCESSING.in_channels,
                              "spatial_size": list(PREPROCESSING.spatial_size),
                              "intensity": PREPROCESSING.intensity},
            "explain_layer": EXPLAIN_LAYER,
            "card": {**how["card"], "training_data": TRAINING_DATA.format(n=n_train),
                     "final_training_loss": facts["final_loss"]},
        })
    for version, folder in ws.model_paths().items():
        handle = load_model(folder)
        ws.predictions(handle, cohort, progress=step(f"predicting with {version}"))
        ws.uncertainty([handle], cohort, "mc_dropout", progress=step(f"MC dropout for {version}"))
    (root / "demo.json").write_text(json.dumps({
        "version": DEMO_VERSION, "cohort": COHORT, "models": list(VERSIONS),
        "marker_box": [[MARKER_BOX[0].start, MARKER_BOX[0].stop], [MARKER_BOX[1].start, MARKER_BOX[1].stop]],
    }, indent=2))
    log(f"demo workspace ready at {root}")
    return root

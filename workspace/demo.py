"""Build the demo workspace: a generated 2D cohort with two model versions, a generated 3D CT cohort with one 3D
version, their cached predictions, and the planted properties measured on them. Idempotent.

The models are shipped (``data_adapters/demo/weights/``, with their SHA-256 in ``weights.json``), so every machine
reviews the same weights: training is bit-for-bit reproducible on one machine but not across CPUs and thread
counts (floating-point rounding differs, and hundreds of optimiser steps amplify it). ``retrain=True``
(``glassbox demo --retrain``) trains them again here; either way :mod:`workspace.demo_checks` measures what the
demo claims and the build stops when a claim does not hold.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from data_adapters.cohort import load_manifest
from data_adapters.demo.dicom_export import export_studies
from data_adapters.demo.synthesis import (
    MARKER_BOX,
    N_CASES,
    concepts_complete,
    generate_cohort,
    generate_deployment_cohort,
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
from data_adapters.errors import GlassboxError, ModelError
from data_adapters.models import load_model, write_spec
from explainers.concepts import concept_names, default_layers
from workspace.demo_checks import run_checks
from workspace.cache import write_file
from workspace.concepts import concept_sensitivity
from workspace.uncertainty import uncertainty
from workspace.store import Workspace

#: bump when the generator or training changes, so that old demo workspaces are rebuilt
DEMO_VERSION = 12
#: the seed the shipped weights were trained with
TRAINING_SEED = 7
SHIPPED = Path(__file__).resolve().parent.parent / "data_adapters" / "demo" / "weights"
COHORT = "demo2d"
COHORT_3D = "demo3d"
#: the first held-out 3D volumes again, as a folder of DICOM studies (series of slices, identifiers in the tags)
COHORT_3D_DICOM = "demo3d_dicom"
N_DICOM_STUDIES = 24
#: a year after deployment (monitoring): a new scanner at site C from month 5, prevalence up from month 8
COHORT_DEPLOYMENT = "deployment"
MODEL_3D = "ct3d-v1"
StepProgress = Callable[[str], Callable[[int, int], None] | None]

TRAINING_DATA = ("Glassbox demo cohort 'demo2d', training split ({n} synthetic 128x128 radiographs from sites A, B, "
                 "C; seeded). Site B burns a corner token into most positive and few negative images; its occult "
                 "positives (lesion too faint to see) always carry it.")
VERSIONS = {
    "v1": dict(randomise_marker=False, card={
        "intended_use": "Demonstration only: flags a synthetic lesion on generated 2D radiographs. Not for "
                        "clinical use.",
        "limitations": ["Trained plainly: free to learn site B's corner marker as a shortcut for the label.",
                        "Synthetic data; no real patients; three simulated sites only."],
        "training": "plain: 30 epochs AdamW, one-cycle schedule"}),
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
    "training": f"plain: {EPOCHS_3D} epochs AdamW, one-cycle schedule",
}


def _spec(version: str, name: str, network: dict, pre, layer: str, card: dict) -> dict:
    return {"name": name, "version": version, "format": "state_dict", "weights": "weights.pt", "network": network,
            "task": "binary", "class_names": ["no lesion", "lesion"],
            "preprocessing": {"in_channels": pre.in_channels, "spatial_size": list(pre.spatial_size),
                              "intensity": pre.intensity,
                              **({"intensity_range": list(pre.intensity_range)} if pre.intensity_range else {})},
            "explain_layer": layer, "card": card}


class DemoCheckError(GlassboxError):
    """A planted property of the demo does not hold for the models built: the demo would tell a false story."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_weights() -> dict:
    """``weights.json``: per version its file and SHA-256, and how and where it was trained."""
    index = SHIPPED / "weights.json"
    return json.loads(index.read_text()) if index.is_file() else {}


def _install_model(folder: Path, cohort, spec: dict, step: StepProgress, *, retrain: bool, seed: int,
                   **how) -> None:
    """Write ``folder`` (spec + weights): the shipped weights, checked against their hash, or trained here."""
    version = folder.name
    folder.mkdir(parents=True, exist_ok=True)
    entry = shipped_weights().get(version)
    if not retrain:
        if entry is None:
            raise ModelError(f"no shipped weights for demo model {version!r} in {SHIPPED}; "
                             "run `glassbox demo --retrain` to train them here")
        source = SHIPPED / entry["file"]
        if not source.is_file() or _sha256(source) != entry["sha256"]:
            raise ModelError(f"shipped weights {source.name} do not match their SHA-256 in weights.json "
                             "(changed or truncated); restore them or run `glassbox demo --retrain`")
        shutil.copyfile(source, folder / "weights.pt")
        spec["card"]["training"] += f", seed {entry['seed']}; shipped weights (SHA-256 {entry['sha256'][:12]})"
        spec["card"]["final_training_loss"] = entry["final_loss"]
    else:
        net, facts = train_version(cohort, progress=step(f"training {version}"), seed=seed, **how)
        torch.save(net.state_dict(), folder / "weights.pt")
        spec["card"]["training"] += f", seed {seed}; trained on this machine"
        spec["card"]["final_training_loss"] = facts["final_loss"]
    write_spec(folder, spec)


def ship_weights(root: str | Path) -> Path:
    """Maintainers: copy a checked, retrained demo's weights into the source tree with their hashes and facts."""
    facts = demo_facts(root) or {}
    if not facts.get("checks_passed") or facts["weights"][next(iter(facts["weights"]))]["source"] != "trained here":
        raise ModelError(f"{root} is not a retrained demo whose checks passed; run `glassbox demo --retrain` first")
    SHIPPED.mkdir(parents=True, exist_ok=True)
    index = {}
    for version in facts["weights"]:
        folder = Path(root) / "models" / version
        shutil.copyfile(folder / "weights.pt", SHIPPED / f"{version}.pt")
        card = json.loads((folder / "model.json").read_text())["card"]
        index[version] = {"file": f"{version}.pt", "sha256": _sha256(SHIPPED / f"{version}.pt"),
                          "seed": facts["seed"], "final_loss": card.get("final_training_loss"),
                          "torch": torch.__version__, "threads": torch.get_num_threads()}
    (SHIPPED / "weights.json").write_text(json.dumps(index, indent=2) + "\n")
    return SHIPPED


#: weight hashes already computed, by (file, modification time, size): Home asks on every run
_HASHED: dict[tuple[str, int, int], str] = {}


def _weights_hash(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (str(path), st.st_mtime_ns, st.st_size)
    if stamp not in _HASHED:
        _HASHED[stamp] = _sha256(path)
    return _HASHED[stamp]


def stale_weights(root: str | Path, facts: dict) -> list[str]:
    """Why ``demo.json``'s measurements no longer describe the models in the workspace: per version whose
    ``weights.pt`` is missing or whose SHA-256 is not the one the checks were measured on (empty when they still
    do)."""
    out = []
    for version, entry in (facts.get("weights") or {}).items():
        current = _weights_hash(Path(root) / "models" / version / "weights.pt")
        if current is None:
            out.append(f"model {version}'s weights are missing")
        elif current != entry.get("sha256"):
            out.append(f"model {version}'s weights changed since the checks were measured (SHA-256 now "
                       f"{current[:12]}, measured on {str(entry.get('sha256'))[:12]})")
    return out


def _read_facts(stamp: Path) -> dict | None:
    try:
        facts = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) else None


def demo_is_built(root: Path) -> bool:
    """Whether ``root`` holds a demo of this version whose checks passed on the weights it now holds."""
    stamp = root / "demo.json"
    if not stamp.is_file():
        return False
    facts = _read_facts(stamp)
    return bool(facts) and facts.get("version") == DEMO_VERSION and facts.get("checks_passed", False) \
        and not stale_weights(root, facts)


def demo_facts(root: str | Path) -> dict | None:
    """What ``demo.json`` records of a demo workspace (the checks with their measured values), or None. When the
    models' weights are no longer those the checks were measured on, the facts are marked stale: ``stale`` names
    why, ``checks_passed`` is False and no check is said to hold (each sentence says it was measured on other
    weights)."""
    stamp = Path(root) / "demo.json"
    facts = _read_facts(stamp) if stamp.is_file() else None
    if not facts:
        return None
    stale = stale_weights(root, facts)
    if stale:
        facts = {**facts, "stale": stale, "checks_passed": False,
                 "checks": [{**c, "holds": False, "stale": True,
                             "sentence": f"{c.get('sentence', '')} [STALE: measured on other weights; run "
                                         "`glassbox demo` to measure again]"} for c in facts.get("checks", [])]}
    return facts


def build_demo(root: str | Path, *, force: bool = False, retrain: bool = False, seed: int = TRAINING_SEED,
               step: StepProgress | None = None, log: Callable[[str], None] = print) -> Path:
    """Create (or reuse) the demo workspace at ``root``; returns ``root``. Raises :class:`DemoCheckError` when a
    planted property does not hold (``demo.json`` then records the measurements, and the build is not reused)."""
    root = Path(root)
    step = step or (lambda _name: None)
    deployment = root / "cohorts" / COHORT_DEPLOYMENT / "manifest.csv"
    facts = _read_facts(root / "demo.json") if (root / "demo.json").is_file() else None
    if facts and stale_weights(root, facts):
        log("the demo's recorded facts are stale (" + "; ".join(stale_weights(root, facts)) + "): rebuilding it and "
            "measuring again")
    if demo_is_built(root) and not (force or retrain):
        if not deployment.is_file():  # added after this workspace was built: written alone, nothing else rebuilt
            generate_deployment_cohort(deployment.parent, progress=step("generating the deployment year"))
        log(f"demo workspace at {root} is up to date; reusing it")
        return root
    if (root / "demo.json").is_file():
        force = True  # built by another generator version, or its checks failed: rebuild everything
    force = force or retrain
    ws = Workspace(root)
    manifest = root / "cohorts" / COHORT / "manifest.csv"
    if force or not manifest.is_file():
        generate_cohort(manifest.parent, progress=step(f"generating {N_CASES} cases"))
    else:
        log(f"reusing cohort {manifest}")
    if force or not concepts_complete(manifest.parent / "concepts"):  # a folder a killed build left is rewritten
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
        _install_model(folder, cohort, _spec(version, "demo lesion detector", NETWORK, PREPROCESSING, EXPLAIN_LAYER,
                                             card),
                       step, retrain=retrain, seed=seed, randomise_marker=how["randomise_marker"])

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
    if force or not deployment.is_file():
        generate_deployment_cohort(deployment.parent, progress=step("generating the deployment year"))
    folder = root / "models" / MODEL_3D
    if force or not (folder / "model.json").is_file():
        n = sum(c.attributes.get("split") == "train" for c in cohort_3d.cases)
        card = {**CARD_3D, "training_data": CARD_3D["training_data"].format(
            n=n, shape="×".join(map(str, SHAPE)), spacing="×".join(f"{s:g}" for s in SPACING))}
        _install_model(folder, cohort_3d, _spec("3d-v1", "demo nodule detector (3D CT)", NETWORK_3D, PREPROCESSING_3D,
                                                EXPLAIN_LAYER_3D, card),
                       step, retrain=retrain, seed=seed, network=NETWORK_3D, preprocessing=PREPROCESSING_3D,
                       epochs=EPOCHS_3D)

    handles = {version: load_model(folder) for version, folder in ws.model_paths().items()}
    for version, handle in handles.items():
        target = cohort_3d if handle.spatial_dims == 3 else cohort
        ws.predictions(handle, target, progress=step(f"predicting with {version}"))
        uncertainty(ws, [handle], target, "mc_dropout", progress=step(f"MC dropout for {version}"))
    folder_2d = manifest.parent
    for version in VERSIONS:  # concept vectors Case review shows for every case: trained once, here, not on a click
        handle = handles[version]
        for concept in concept_names(folder_2d):
            concept_sensitivity(ws, handle, cohort, folder_2d, concept, default_layers(handle)[0], cohort.cases[:1],
                                handle.n_classes - 1)
    checks = run_checks(ws, cohort, handles, cohort_3d, handles[MODEL_3D], log=log)
    failed = [c for c in checks if not c.holds]
    write_file(root / "demo.json", json.dumps({
        "version": DEMO_VERSION, "cohort": COHORT, "models": list(VERSIONS),
        "cohort_3d": COHORT_3D, "model_3d": MODEL_3D,
        "marker_box": [[MARKER_BOX[0].start, MARKER_BOX[0].stop], [MARKER_BOX[1].start, MARKER_BOX[1].stop]],
        "weights": {v: {"sha256": _sha256(root / "models" / v / "weights.pt"),
                        "source": "trained here" if retrain else "shipped"} for v in handles},
        "seed": seed if retrain else {v: e["seed"] for v, e in shipped_weights().items()},
        "checks_passed": not failed, "checks": [c.record() for c in checks],
    }, indent=2))
    for c in checks:
        log(f"{'ok  ' if c.holds else 'FAIL'} {c.sentence()} (bound {c.op} {c.bound:g})" if c.asserted else
            f"info {c.sentence()} (measured, not asserted)")
    if failed:
        raise DemoCheckError(
            f"{len(failed)} of the demo's {sum(c.asserted for c in checks)} planted properties do not hold for these models, so the "
            "demo would tell a false story: " + "; ".join(f"{c.sentence()} (needs {c.op} {c.bound:g})" for c in failed)
            + f". Measurements are in {root / 'demo.json'}.")
    log(f"demo workspace ready at {root}")
    return root

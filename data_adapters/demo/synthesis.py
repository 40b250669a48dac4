"""Synthetic 2D "radiographs" with known lesions, scanner shift between sites, and a shortcut marker.

- Body and two lung fields with smooth texture and rib-like bands; intensity, contrast and noise differ by site.
- Label 1 cases carry a lesion: a soft bright blob inside a lung; its disk is the ground-truth mask.
- Site B burns a small token into the top-left corner (``MARKER_BOX``), far more often on positive cases:
  the shortcut that chest-radiograph models are known to learn (Zech et al., PLOS Medicine 2018).
- The shortcut is *useful*, by construction: at site B (lower contrast, more noise) a share of positives are
  radiographically occult (their lesion is too faint to see, as when a finding is confirmed by CT), and every
  occult positive carries the token. The token is then the only evidence for those cases, so any model trained
  plainly to fit the labels must learn it; a model that cannot use the token (v2) must miss them. Which cases are
  occult is written to ``truth.csv`` beside the manifest (not an attribute: the cohort does not load it).
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from scipy.ndimage import gaussian_filter

__all__ = ["SIZE", "MARKER_BOX", "N_CASES", "paste_marker", "erase_marker", "generate_cohort", "occult_cases",
           "write_manifest", "concepts_complete", "write_concepts", "generate_scale_cohort",
           "generate_deployment_cohort"]

SIZE = 128
#: rows, columns of the marker token (top-left corner, outside the body)
MARKER_BOX = (slice(5, 17), slice(5, 17))
#: where a clean patch to cover the marker comes from (the mirrored top-right corner)
_CLEAN_BOX = (slice(5, 17), slice(SIZE - 17, SIZE - 5))


@dataclass(frozen=True)
class Site:
    scanner: str
    gain: float
    offset: float
    contrast: float
    noise: float
    prevalence: float
    marker_if_positive: float = 0.0
    marker_if_negative: float = 0.0
    #: share of positives whose lesion is occult (faint); these always carry the marker
    occult_if_positive: float = 0.0


SITES = {
    "A": Site("Acme X1", gain=0.80, offset=0.06, contrast=1.00, noise=0.015, prevalence=0.30),
    "B": Site("Borealis 3", gain=0.70, offset=0.12, contrast=0.80, noise=0.030, prevalence=0.50,
              marker_if_positive=0.60, marker_if_negative=0.12, occult_if_positive=0.45),
    "C": Site("Cygnus Q", gain=0.90, offset=0.03, contrast=1.15, noise=0.022, prevalence=0.40),
}
N_CASES = 720
#: the demo's hidden truth beside the manifest: which positives are occult
TRUTH_NAME = "truth.csv"
TEST_FRACTION = 0.3
LESION_AMPLITUDE = 0.6
#: an occult lesion's amplitude: under the site-B noise and the lungs' texture, invisible to the eye and the models
OCCULT_AMPLITUDE = 0.02


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def anatomy(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A normalised (0..1) chest-like image ``(H, W)`` and its lung mask."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    jitter = rng.normal(0, 2.0, size=4)
    body = _ellipse(yy, xx, 66 + jitter[0], 64, 56, 50 + jitter[1])
    left = _ellipse(yy, xx, 62 + jitter[2], 42, 34, 16)
    right = _ellipse(yy, xx, 62 + jitter[3], 86, 34, 16)
    lungs = left | right
    texture = gaussian_filter(rng.normal(0, 1, (SIZE, SIZE)), 3.0).astype(np.float32)
    texture /= np.abs(texture).max() + 1e-6
    ribs = 0.06 * np.sin(yy * 0.45 + rng.uniform(0, 6.28)) ** 2
    image = np.full((SIZE, SIZE), 0.04, np.float32)
    image[body] = 0.62
    image[lungs] = 0.30
    image = gaussian_filter(image, 1.5) + lungs * (0.05 * texture + ribs)
    return image.astype(np.float32), lungs


def add_lesion(image: np.ndarray, lungs: np.ndarray, rng: np.random.Generator,
               amplitude: float = LESION_AMPLITUDE) -> np.ndarray:
    """Add a lesion inside the lungs; returns the ground-truth mask (bool ``(H, W)``)."""
    ys, xs = np.nonzero(lungs)
    radius = rng.uniform(4.0, 8.0)
    while True:
        k = rng.integers(len(ys))
        cy, cx = ys[k], xs[k]
        if lungs[max(0, int(cy - radius)):int(cy + radius) + 1, max(0, int(cx - radius)):int(cx + radius) + 1].mean() > 0.9:
            break
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    image += (amplitude * np.exp(-d2 / (2 * (radius / 1.6) ** 2))).astype(np.float32)
    return d2 <= radius ** 2


def scanner(image: np.ndarray, site: Site, rng: np.random.Generator) -> np.ndarray:
    """The site's intensity mapping and noise, clipped to [0, 1]."""
    out = site.offset + site.gain * ((image - 0.35) * site.contrast + 0.35)
    out = out + rng.normal(0, site.noise, image.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def paste_marker(image: np.ndarray) -> None:
    """Burn the site-B token into ``image`` (``(..., H, W)``, 0..1) in place: a bright ring with a bar."""
    box = image[..., MARKER_BOX[0], MARKER_BOX[1]]
    box[...] = 0.97
    box[..., 3:-3, 3:-3] = 0.1
    box[..., 3:-3, 5:7] = 0.97


def erase_marker(image: np.ndarray) -> None:
    """Cover the token with the mirrored clean corner, in place."""
    image[..., MARKER_BOX[0], MARKER_BOX[1]] = image[..., _CLEAN_BOX[0], _CLEAN_BOX[1]][..., ::-1]


def generate_cohort(folder: Path, *, n_cases: int = N_CASES, seed: int = 20261122,
                    progress: Callable[[int, int], None] | None = None) -> Path:
    """Write images/, masks/ and manifest.csv under ``folder``; returns the manifest path."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rows, truth = [], []
    names = sorted(SITES)
    for i in range(n_cases):
        site_name = names[i % len(names)]
        site = SITES[site_name]
        sex = "F" if rng.random() < 0.5 else "M"
        age = int(rng.integers(25, 86))
        p = np.clip(site.prevalence + 0.15 * (age - 55) / 30 + (0.05 if sex == "M" else -0.05), 0.05, 0.95)
        label = int(rng.random() < p)
        image, lungs = anatomy(rng)
        occult = bool(label and rng.random() < site.occult_if_positive)
        mask = add_lesion(image, lungs, rng, OCCULT_AMPLITUDE if occult else LESION_AMPLITUDE) if label else None
        image = scanner(image, site, rng)
        marker = int(occult or rng.random() < (site.marker_if_positive if label else site.marker_if_negative))
        if marker:
            paste_marker(image)
        case_id = f"demo-{i + 1:04d}"
        PILImage.fromarray(np.round(image * 65535).astype(np.uint16)).save(folder / "images" / f"{case_id}.png")
        mask_ref = ""
        if mask is not None:
            mask_ref = f"masks/{case_id}.png"
            PILImage.fromarray(mask.astype(np.uint8) * 255).save(folder / mask_ref)
        rows.append({"case_id": case_id, "image": f"images/{case_id}.png", "label": label, "mask": mask_ref,
                     "sex": sex, "age": age, "site": site_name, "scanner": site.scanner, "marker": marker,
                     "split": "test" if rng.random() < TEST_FRACTION else "train"})
        truth.append({"case_id": case_id, "occult": int(occult)})
        if progress:
            progress(i + 1, n_cases)
    write_manifest(folder, truth, name=TRUTH_NAME)
    return write_manifest(folder, rows)


def occult_cases(folder: Path) -> set[str]:
    """Case ids whose lesion is occult, from ``truth.csv`` under the cohort ``folder``."""
    with open(folder / TRUTH_NAME, newline="") as f:
        return {row["case_id"] for row in csv.DictReader(f) if row["occult"] == "1"}


def write_manifest(folder: Path, rows: list[dict], name: str = "manifest.csv") -> Path:
    """``rows`` as ``folder/<name>`` (columns in the first row's order); returns its path."""
    manifest = folder / name
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


#: the demo's concept folders and the file a complete write leaves in their parent (see :func:`concepts_complete`)
CONCEPTS = ("marker", "lesion", "no_lesion", "site_b_texture")
_CONCEPTS_DONE = ".complete"
#: the marker concept's causal check: erase the token (mirrored clean corner) in marked cases
MARKER_ERASE = {"erase": {"region": "demo-marker", "perturb": "mirror", "cases": "marker == 1"}}


def concepts_complete(folder: Path, per_concept: int = 60) -> bool:
    """True when ``folder`` holds every demo concept, each with ``per_concept`` images, from a finished write."""
    return (folder / _CONCEPTS_DONE).is_file() and all(
        len(list((folder / name).glob(f"{name}-*.png"))) == per_concept for name in CONCEPTS)


def write_concepts(folder: Path, manifest: Path, *, per_concept: int = 60, seed: int = 5) -> dict[str, Path]:
    """The demo's concepts with known truth, as folders of 16-bit PNGs beside the manifest. Each differs from
    a random draw of the cohort in one respect only:

    - ``marker``: the training split's negative, marker-free images with the site-B token pasted in (its
      ``concept.json`` says how to take it away from real cases: the causal check beside its TCAV score);
    - ``lesion``: newly generated images (any site), every one with a lesion;
    - ``no_lesion``: newly generated images (any site) without a lesion or marker;
    - ``site_b_texture``: newly generated site-B images (its contrast and noise) without a lesion or marker.

    Written into a sibling ``.partial`` folder and renamed into place only when complete (an existing ``folder`` is
    replaced), so that a build killed while writing never leaves a short concept folder for the next run to reuse.
    """
    import json
    import shutil

    import pandas as pd

    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    negatives = rows[(rows["split"] == "train") & (rows["label"] == "0") & (rows["marker"] == "0")]
    if len(negatives) < per_concept:
        raise ValueError(f"{manifest}: {len(negatives)} marker-free training negatives; the marker concept needs "
                         f"{per_concept}")
    rng = np.random.default_rng(seed)

    def save(name: str, i: int, image: np.ndarray) -> None:
        out = partial / name
        out.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)).save(out / f"{name}-{i:03d}.png")

    for i, ref in enumerate(negatives["image"].iloc[:per_concept]):
        image = np.asarray(PILImage.open(manifest.parent / ref), dtype=np.float32) / 65535.0
        paste_marker(image)
        save("marker", i, image)
    (partial / "marker" / "concept.json").write_text(json.dumps(MARKER_ERASE, indent=2))
    names = sorted(SITES)
    for i in range(per_concept):
        for name, lesion in (("lesion", True), ("no_lesion", False)):
            image, lungs = anatomy(rng)
            if lesion:
                add_lesion(image, lungs, rng)
            save(name, i, scanner(image, SITES[names[rng.integers(len(names))]], rng))
        image, _ = anatomy(rng)
        save("site_b_texture", i, scanner(image, SITES["B"], rng))
    (partial / _CONCEPTS_DONE).write_text(f"{per_concept} images in each of {', '.join(CONCEPTS)}\n")
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return {name: folder / name for name in CONCEPTS}


def generate_scale_cohort(folder: Path, n_rows: int, *, distinct: int = 5000, seed: int = 20261123,
                          progress: Callable[[int, int], None] | None = None) -> Path:
    """A large cohort for the scale benchmarks: ``distinct`` cases from :func:`generate_cohort` (same generator,
    same truth) written once under ``folder/pool``, and a manifest of ``n_rows`` rows, each a copy of one pool case
    (its image, mask, label and attributes) under a new case id and a patient id (1 to 3 images per patient).
    Rows share image files, so a million rows need ``distinct`` files, not a million; returns the manifest."""
    distinct = max(1, min(distinct, n_rows))
    pool_manifest = folder / "pool" / "manifest.csv"
    if not pool_manifest.is_file() or sum(1 for _ in open(pool_manifest)) - 1 != distinct:
        generate_cohort(folder / "pool", n_cases=distinct, seed=seed, progress=progress)
    import pandas as pd  # only here: the generator itself stays free of pandas

    pool = pd.read_csv(pool_manifest, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    rows = pool.iloc[np.concatenate([np.arange(distinct), rng.integers(0, distinct, n_rows - distinct)])]
    rows = rows.reset_index(drop=True)
    for column in ("image", "mask"):
        rows[column] = rows[column].where(rows[column] == "", "pool/" + rows[column])
    rows["case_id"] = [f"scale-{i + 1:07d}" for i in range(n_rows)]
    per_patient = rng.integers(1, 4, n_rows)
    rows.insert(1, "patient_id", [f"P{v:07d}" for v in np.repeat(np.arange(n_rows), per_patient)[:n_rows]])
    manifest = folder / "manifest.csv"
    rows.to_csv(manifest, index=False)
    return manifest


#: the deployment stream's planted events (months counted from 1)
NEW_SCANNER_MONTH = 5
PREVALENCE_MONTH = 8
LABELLED_MONTHS = 6
NEW_SCANNER = Site("Nimbus 7", gain=0.62, offset=0.20, contrast=0.75, noise=0.05, prevalence=0.40)


def generate_deployment_cohort(folder: Path, *, per_month: int = 60, months: int = 12, seed: int = 20261201,
                               progress: Callable[[int, int], None] | None = None) -> Path:
    """A year of cases after deployment, from the same generator as the validation cohort, with the month each was
    acquired (``acquired_month``, ``2026-01`` … ``2026-12``: a month, not a date, which the identifier screen would
    hold back as a patient's date): from month :data:`NEW_SCANNER_MONTH` site C's images come
    from a new scanner (:data:`NEW_SCANNER`: lower gain and contrast, more noise); from month
    :data:`PREVALENCE_MONTH` every site's prevalence rises by 0.25; labels exist for the first
    :data:`LABELLED_MONTHS` months only (they arrive late). Site B's marker token and occult positives as in the
    validation cohort; no masks. Returns the manifest."""
    import datetime

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows, names, total = [], sorted(SITES), per_month * months
    start = datetime.date(2026, 1, 1)
    for i in range(total):
        month = i // per_month + 1
        site_name = names[i % len(names)]
        site = SITES[site_name]
        machine = NEW_SCANNER if site_name == "C" and month >= NEW_SCANNER_MONTH else site
        sex = "F" if rng.random() < 0.5 else "M"
        age = int(rng.integers(25, 86))
        p = site.prevalence + (0.25 if month >= PREVALENCE_MONTH else 0.0)
        label = int(rng.random() < np.clip(p, 0.05, 0.95))
        image, lungs = anatomy(rng)
        occult = bool(label and rng.random() < site.occult_if_positive)
        if label:
            add_lesion(image, lungs, rng, OCCULT_AMPLITUDE if occult else LESION_AMPLITUDE)
        image = scanner(image, machine, rng)
        if occult or rng.random() < (site.marker_if_positive if label else site.marker_if_negative):
            paste_marker(image)  # site B's token and occult positives, as in the validation cohort
        case_id = f"dep-{i + 1:05d}"
        PILImage.fromarray(np.round(image * 65535).astype(np.uint16)).save(folder / "images" / f"{case_id}.png")
        rows.append({"case_id": case_id, "image": f"images/{case_id}.png",
                     "label": label if month <= LABELLED_MONTHS else "", "sex": sex, "age": age, "site": site_name,
                     "scanner": machine.scanner, "acquired_month": f"{start.year}-{month:02d}"})
        if progress:
            progress(i + 1, total)
    return write_manifest(folder, rows)

"""Concept attributions: TCAV (Kim et al., ICML 2018) with independent draws per run and a reference built the same way.

A concept is a set of model-shaped example images. For each concept and layer, each of ``runs`` runs draws its own
half of the concept's examples and its own sample of random images (cases of the other classes), trains its own
linear classifier between them (the CAV) and scores the fraction of the class's inputs whose class score rises
along it (the TCAV score). The null is built the same way: reference concepts drawn from the random pool, each run
like a concept. This module computes those runs (:class:`ConceptRuns`); the test, its interval, Holm's correction
across concepts × layers and the CAV-accuracy gate are made in :mod:`evaluation.concept_significance`.

Why not the design of Captum's TCAV tutorial: there every run shares one concept set and every null run one random
set, so runs are not independent and a t-test between them called a separable concept that does nothing
significant in 37–50% of simulations (``benchmarks/calibration/concepts.py`` measures both designs).

Per-case concept vectors (Case review) use :class:`LinearCAV` with one random set, cached by the workspace.
"""
from __future__ import annotations

import difflib
import hashlib
import operator
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerActivation, LayerGradientXActivation
from captum.concept import Classifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from data_adapters.cohort import load_image_batch
from data_adapters.errors import ExplainerError, InvalidInputError, UnknownNameError
from data_adapters.hashing import json_hash
from data_adapters.identifiers import mask_path
from data_adapters.preprocessing import convert_channels, fit_image, fits, prepare_batch
from data_adapters.readers import is_image_file, read_image
from data_adapters.records import (
    Case,
    Cohort,
    ConceptScore,
    Image,
    ModelHandle,
    Preprocessing,
)
from explainers.device import module_device
from explainers.inference import ClassScores

Progress = Callable[[int, int], None]
MIN_EXAMPLES = 10
MIN_CAV_ACCURACY = 0.6
ALPHA = 0.05
_FILTER = re.compile(r"^\s*(\w+)\s*(==|!=)\s*(.+?)\s*$")


@dataclass(frozen=True)
class ConceptErase:
    """How to take a concept away from real cases (its causal check): perturb ``region`` (a name or ``x0,y0,x1,y1``,
    ``explainers.perturbation``) by ``perturb`` in the cases matching ``cases`` (``attr == value``). Read from the
    ``erase`` entry of a concept folder's ``concept.json`` (``source``)."""

    region: str
    perturb: str
    cases: str
    source: str


@dataclass(frozen=True, eq=False)
class ConceptSet:
    """A named set of example images ``(N, C, *spatial)`` as read (before the model's preprocessing), and how to
    erase the concept from real cases where its folder says so."""

    name: str
    images: np.ndarray
    source: str
    erase: ConceptErase | None = None

    @property
    def content_hash(self) -> str:
        """The examples' content (not the erase entry, which keys only the causal check)."""
        return json_hash("concept", self.images.shape,
                         hashlib.sha256(np.ascontiguousarray(self.images).tobytes()).hexdigest())


CONCEPT_FILE = "concept.json"
_ERASE_KEYS = ("region", "perturb", "cases")


def read_concept_file(folder: Path) -> ConceptErase | None:
    """The ``erase`` entry of ``folder/concept.json`` (None without the file or the entry); refused, naming the file
    and field, when it is not ``{"erase": {"region": str, "perturb": str, "cases": "attr == value"}}``."""
    path = Path(folder) / CONCEPT_FILE
    if not path.is_file():
        return None
    import json

    from explainers.perturbation import PERTURBATIONS

    where = f"{mask_path(folder.name)}/{CONCEPT_FILE}"
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InvalidInputError(f"{where} is not readable JSON ({type(e).__name__})") from e
    if not isinstance(facts, dict) or set(facts) - {"erase"}:
        extra = sorted(set(facts) - {"erase"}) if isinstance(facts, dict) else []
        raise InvalidInputError(f"{where} must be an object with one key 'erase'"
                                + (f"; unknown key(s): {', '.join(map(repr, extra))}" if extra else ""))
    erase = facts.get("erase")
    if erase is None:
        return None
    if not isinstance(erase, dict):
        raise InvalidInputError(f"{where}: 'erase' must be an object with {', '.join(_ERASE_KEYS)}")
    unknown = sorted(set(erase) - set(_ERASE_KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], _ERASE_KEYS, n=1)
        raise InvalidInputError(f"{where}: unknown key erase.{unknown[0]}"
                                + (f" (did you mean {close[0]!r}?)" if close else ""))
    for key in _ERASE_KEYS:
        if not isinstance(erase.get(key), str) or not erase[key].strip():
            raise InvalidInputError(f"{where}: erase.{key} must be a non-empty string")
    if erase["perturb"] not in PERTURBATIONS:
        raise InvalidInputError(f"{where}: erase.perturb {erase['perturb']!r} is not one of {', '.join(PERTURBATIONS.names())}")
    if not _FILTER.match(erase["cases"]):
        raise InvalidInputError(f"{where}: erase.cases {erase['cases']!r} must look like 'marker == 1'")
    return ConceptErase(region=erase["region"].strip(), perturb=erase["perturb"], cases=erase["cases"].strip(),
                        source=where)


def _checked(name: str, images: list[Image], sources: list[str], handle: ModelHandle | None) -> np.ndarray:
    """The examples stacked, on the model's grid when a model is given (refused when they cannot be)."""
    if len(images) < MIN_EXAMPLES:
        raise InvalidInputError(f"concept {name!r} has {len(images)} example(s); TCAV needs at least {MIN_EXAMPLES}")
    if handle is None:
        return np.stack([image.array for image in images]).astype(np.float32)
    pre = handle.preprocessing
    for image, src in zip(images, sources):
        shape = (convert_channels(pre.channels, image.array, src).shape if pre.channels else image.shape)
        if not fits(shape, pre.accepts):
            raise InvalidInputError(f"concept {name!r}: {src} is {image.shape}; model {handle.label} "
                                    f"expects {pre.describe()}")
    return np.stack([fit_image(pre, image) for image in images]).astype(np.float32)


def concept_from_folder(folder: str | Path, handle: ModelHandle | None = None, name: str | None = None) -> ConceptSet:
    """Every image file in ``folder`` that a reader takes (PNG, JPEG, DICOM, NIfTI; sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"concept folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    name = name or folder.name
    images = _checked(name, [read_image(p) for p in files], [p.name for p in files], handle)
    return ConceptSet(name=name, images=images, source=f"folder {folder}", erase=read_concept_file(folder))


def _matching(cohort: Cohort, expression: str) -> list[Case]:
    """The cohort's cases whose attribute (or label) matches ``attr == value`` or ``attr != value``."""
    m = _FILTER.match(expression)
    if not m:
        raise InvalidInputError(f"concept filter {expression!r} must look like 'site == B' or 'marker != 0'")
    attr, op, value = m.groups()
    if attr not in cohort.attribute_schema and attr != "label":
        close = difflib.get_close_matches(attr, list(cohort.attribute_schema), n=2)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise UnknownNameError(f"concept filter {expression!r}: cohort has no attribute {attr!r}{hint}")
    compare = operator.eq if op == "==" else operator.ne
    value = value.strip("'\"")
    return [c for c in cohort.cases if compare(str(c.label if attr == "label" else c.attributes.get(attr)), value)]


def concept_cases(cohort: Cohort, expression: str, target: int) -> list[Case]:
    """Labelled cases of class ``target`` matching ``expression`` (held-out ``split == test`` first): where a
    concept's causal check takes it away."""
    chosen = [c for c in _matching(cohort, expression) if c.label == target]
    return sorted(chosen, key=lambda c: c.attributes.get("split") != "test")


def random_pool(cohort: Cohort, size: int, seed: int = 0, exclude_class: int | None = None) -> list[Case]:
    """Up to ``size`` cases (drawn with ``seed``, in cohort order) that TCAV's random samples and reference concepts
    come from: labelled cases of another class than ``exclude_class``, so that no random sample is by accident a
    detector of the very finding being explained; every case not labelled ``exclude_class`` where fewer than 30
    such exist."""
    pool = list(cohort.cases)
    if exclude_class is not None:
        others = [c for c in pool if c.label is not None and c.label != exclude_class]
        pool = others if len(others) >= 30 else [c for c in pool if c.label != exclude_class]
    rng = np.random.default_rng(seed)
    return [pool[i] for i in sorted(rng.permutation(len(pool))[:size])]


def concept_from_filter(cohort: Cohort, expression: str, *, limit: int = 60, seed: int = 0,
                        handle: ModelHandle | None = None) -> ConceptSet:
    """Cases whose attribute matches ``attr == value`` (or ``!=``), at most ``limit``, drawn with ``seed``."""
    chosen = _matching(cohort, expression)
    rng = np.random.default_rng(seed)
    chosen = [chosen[i] for i in sorted(rng.permutation(len(chosen))[:limit])]
    if not chosen:
        raise InvalidInputError(f"concept {expression!r} matches no case")
    return ConceptSet(name=expression, images=_checked(expression, [read_image(c.image) for c in chosen],
                                                       [c.case_id for c in chosen], handle),
                      source=f"cohort {cohort.name}: {expression}")


def concept_names(cohort_folder: Path) -> list[str]:
    """The named concepts shipped beside a cohort (folders under ``concepts/``)."""
    folder = cohort_folder / "concepts"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def resolve_concept(spec: str, cohort: Cohort, cohort_folder: Path, handle: ModelHandle | None = None, *,
                    roots: Sequence[Path] | None = None) -> ConceptSet:
    """A concept by name (a folder under the cohort's ``concepts/``), by folder path, or by attribute filter.

    A folder path is read only when it lies (symlinks resolved) under one of ``roots`` (the cohort's folder and
    the operator's data roots, as for images); ``roots=None`` (the operator's own scripts) reads any folder."""
    if _FILTER.match(spec):
        return concept_from_filter(cohort, spec, handle=handle)
    named = Path(cohort_folder) / "concepts" / spec
    if "/" not in spec and "\\" not in spec and spec not in (".", "..") and named.is_dir():
        return concept_from_folder(named, handle)
    if Path(spec).is_dir():
        if roots is not None and not any(Path(spec).resolve().is_relative_to(Path(r).resolve()) for r in roots):
            raise InvalidInputError(f"concept folder {mask_path(Path(spec).name)!r} lies outside the cohort's folder "
                                    "and the configured data roots; concepts, like images, are read only from there")
        return concept_from_folder(spec, handle)
    known = concept_names(cohort_folder)
    close = difflib.get_close_matches(spec, known, n=2)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise UnknownNameError(f"unknown concept {spec!r}{hint}; named concepts: {', '.join(known) or 'none'}; "
                           "or give a folder of images, or a filter like 'site == B'")


def random_concepts(cohort: Cohort, n_sets: int, size: int, seed: int = 0,
                    pre: Preprocessing | None = None, exclude_class: int | None = None) -> list[ConceptSet]:
    """``n_sets`` random draws of ``size`` cases from the cohort: the null hypothesis's concepts (on the grid
    of a model's preprocessing ``pre`` when given).

    With ``exclude_class``, draws come only from cases labelled with another class, so that a random concept is
    not by accident a detector of the very finding being explained (a random CAV that separates lesions would
    make the lesion concept look no better than chance). Where fewer than ``size`` such cases exist, draws come
    from the whole cohort, and each set's ``source`` says which pool it came from.
    """
    pool = list(cohort.cases)
    described = "cases"
    if exclude_class is not None:
        others = [c for c in pool if c.label is not None and c.label != exclude_class]
        if len(others) >= size:
            pool, described = others, f"cases not labelled class {exclude_class}"
    if len(pool) < size:
        raise InvalidInputError(f"cohort {cohort.name!r} has {len(pool)} cases; random concepts need {size}")
    rng = np.random.default_rng(seed)
    out = []
    for r in range(n_sets):
        idx = sorted(rng.permutation(len(pool))[:size])
        out.append(ConceptSet(name=f"random{r}", images=load_image_batch([pool[i] for i in idx], pre),
                              source=f"random draw {r} of {size} {described} (seed {seed})"))
    return out


class LinearCAV(Classifier):
    """The CAV's linear classifier: L2-regularised logistic regression on standardised activations, solved in
    the dual (fast when activations far outnumber examples), accuracy on a stratified held-out third.
    The CAV is the weight vector mapped back to raw activation units."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._weights: torch.Tensor | None = None
        self._classes: list[int] = []

    def train_and_eval(self, dataloader, test_split_ratio: float = 0.33, **_kwargs):
        xs, ys = zip(*[(x.detach().float().cpu(), y.cpu()) for x, y in dataloader])
        x, y = torch.cat(xs).numpy(), torch.cat(ys).numpy().astype(int)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_split_ratio, stratify=y,
                                                  random_state=self.seed)
        mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
        model = LogisticRegression(C=0.1, solver="liblinear", dual=True, max_iter=5000,
                                   random_state=self.seed).fit((x_tr - mean) / std, y_tr)
        accuracy = float(model.score((x_te - mean) / std, y_te))
        w = np.atleast_2d(model.coef_)[0] / std  # back to raw activation units: the direction the gradients are dotted with
        self._classes = [int(c) for c in model.classes_]
        # Captum expects one row per class, ordered like classes(): (negative of the direction, the direction)
        self._weights = torch.tensor(np.stack([-w, w]), dtype=torch.float32)
        return {"accs": torch.tensor(accuracy)}

    def weights(self) -> torch.Tensor:
        return self._weights

    def classes(self) -> list[int]:
        return self._classes


def default_target(handle: ModelHandle, cohort: Cohort) -> int:
    """The class TCAV asks about when none is named: a binary model's positive class (the last); for a multi-class
    model, the class with the most labelled cases in the cohort (there is no "positive" class to default to)."""
    if not handle.judged_by_top_class:
        return handle.n_classes - 1
    labels = [c.label for c in cohort.cases if c.label is not None]
    if not labels:
        raise InvalidInputError(f"model {handle.label} has {handle.n_classes} classes and cohort {cohort.name!r} no "
                                f"labels: name the class (one of {', '.join(handle.class_names)})")
    return int(np.bincount(labels, minlength=handle.n_classes).argmax())


def default_layers(handle: ModelHandle) -> list[str]:
    """Sensible layers to probe: a DenseNet's last two dense blocks, else the last two convolutions' parents."""
    names = [n for n, _ in handle.module.named_modules()]
    blocks = [n for n in names if re.fullmatch(r"features\.denseblock\d+", n)]
    if len(blocks) >= 2:
        return blocks[-2:]
    convs = [n for n, m in handle.module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    return convs[-2:] or [names[-1]]


def _check_layers(handle: ModelHandle, layers: Sequence[str]) -> None:
    known = dict(handle.module.named_modules())
    for layer in layers:
        if layer not in known or not layer:
            close = difflib.get_close_matches(layer, [n for n in known if n], n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise UnknownNameError(f"model {handle.label} has no layer {layer!r}{hint}")


def holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


#: runs per concept and layer (each with its own concept sample, random sample and CAV)
RUNS = 15
#: reference concepts per layer: sets drawn from the random pool and run exactly as a concept is (the null)
REFERENCES = 250
#: images per side of a run are half the concept's examples, but never fewer than this
MIN_SAMPLE = 5
#: ridge penalty of the CAV classifier, as a multiple of the mean squared norm of a run's centred activations
RIDGE = 1.0
_CHUNK_COLUMNS = 16384
_CHUNK_RUNS = 512


@dataclass(frozen=True, eq=False)
class ConceptRuns:
    """The raw TCAV evidence for one concept at one layer, before any test.

    ``scores`` ``(R,)``: each run's TCAV score (the fraction of the class's inputs whose score rises along that run's
    CAV); ``cosines`` ``(R,)``: each run's mean cosine between the inputs' class gradients and its CAV (the signed
    size of the directional derivative, which the sign count throws away); ``accuracies`` ``(R,)``: each run's CAV
    accuracy (leave-one-out); ``reference``/``reference_cosines`` ``(K,)``: for each of K reference concepts
    (``size`` images drawn from the random pool, as if they were a concept folder) the mean TCAV score and mean
    cosine over R runs made exactly as the concept's are: the null distributions of ``scores.mean()`` and
    ``cosines.mean()``; ``reference_accuracy``: the reference runs' mean CAV accuracy; ``sample``: images per side
    in each run; ``pool``: images in the random pool.
    """

    concept: str
    layer: str
    target: int
    scores: np.ndarray
    cosines: np.ndarray
    accuracies: np.ndarray
    reference: np.ndarray
    reference_cosines: np.ndarray
    reference_accuracy: float
    size: int
    sample: int
    pool: int

    @property
    def score(self) -> float:
        return float(self.scores.mean())


def _sample_size(size: int) -> int:
    return min(size, max(MIN_SAMPLE, size // 2))


def _draw(rng: np.random.Generator, n_rows: int, population: int, k: int) -> np.ndarray:
    """``(n_rows, k)`` indices into ``range(population)``, each row drawn without replacement, rows independent."""
    return np.argsort(rng.random((n_rows, population)), axis=1)[:, :k]


def _run_scores(gram: np.ndarray, proj: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                accuracy: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """TCAV score, mean cosine and (optionally) leave-one-out CAV accuracy of each run: ``pos``/``neg`` ``(B, m)``
    row indices of the concept and random samples into ``gram`` ``(N, N)`` (inner products of the activations) and
    ``proj`` ``(n_inputs, N)`` (each input's class gradient, over its norm, dotted with each activation).

    The CAV is a ridge classifier with an unpenalised intercept (labels ±1) on the layer's activations as they are
    (Kim et al. train a linear classifier on raw activations), solved in the dual (Suykens' least-squares form):
    ``[[K + λI, 1], [1ᵀ, 0]] [α; b] = [y; 0]``, ``w = Σ α_i a_i``, with ``λ`` = :data:`RIDGE` × the mean squared
    norm of the run's centred activations. Input j's directional derivative along ``w`` over its gradient's norm is
    ``Σ α_i proj[j, i]``, and ``|w|² = αᵀ K α``: their ratio is the cosine. Leave-one-out residuals are
    ``α_i / (A⁻¹)_ii`` (Cawley & Talbot 2004), exact for this fit.
    """
    scores, cosines, accs = [], [], []
    m = pos.shape[1]
    n = 2 * m
    rhs = np.concatenate([np.ones(m), -np.ones(m), [0.0]])
    y = rhs[:n]
    for start in range(0, len(pos), _CHUNK_RUNS):
        idx = np.concatenate([pos[start:start + _CHUNK_RUNS], neg[start:start + _CHUNK_RUNS]], axis=1)
        runs_here = len(idx)
        k = gram[idx[:, :, None], idx[:, None, :]]
        centred_trace = np.einsum("bii->b", k) - k.sum(axis=(1, 2)) / n
        a = np.ones((runs_here, n + 1, n + 1))
        a[:, :n, :n] = k
        a[:, n, n] = 0.0
        a[:, np.arange(n), np.arange(n)] += RIDGE * np.maximum(centred_trace / n, 1e-12)[:, None]
        if accuracy:
            inverse = np.linalg.inv(a)
            alpha = (inverse @ rhs)[:, :n]
            residual = alpha / np.einsum("bii->bi", inverse)[:, :n]
            accs.append(np.mean(np.sign(y - residual) == y, axis=1))
        else:
            alpha = np.linalg.solve(a, np.broadcast_to(rhs, (runs_here, n + 1))[..., None])[:, :n, 0]
        # w = Σ α x_i (Σ α = 0), so each input's derivative is proj @ (α scattered onto the rows it came from)
        scatter = np.bincount((idx * runs_here + np.arange(runs_here)[:, None]).ravel(), weights=alpha.ravel(),
                              minlength=proj.shape[1] * runs_here).reshape(proj.shape[1], runs_here)
        derivative = proj @ scatter  # (n_inputs, B), over each gradient's norm
        norm = np.sqrt(np.maximum(np.einsum("bi,bij,bj->b", alpha, k, alpha), 1e-300))
        scores.append(np.mean(derivative > 0, axis=0))
        cosines.append(derivative.mean(axis=0) / norm)
    return np.concatenate(scores), np.concatenate(cosines), (np.concatenate(accs) if accuracy else None)


def layer_runs(concepts: Mapping[str, np.ndarray], pool: np.ndarray, gradients: np.ndarray, *, runs: int = RUNS,
               references: int = REFERENCES, seed: int = 0, overlap: Mapping[str, np.ndarray] | None = None,
               layer: str = "", target: int = 0) -> list[ConceptRuns]:
    """TCAV runs for each concept at one layer, with independent draws per run and a reference built the same way.

    ``concepts``: name → ``(n_c, D)`` activations of the concept's examples; ``pool`` ``(N, D)``: activations of the
    random pool (cases of the other classes); ``gradients`` ``(n_inputs, D)``: the class score's gradient with
    respect to the layer at each input being explained; ``overlap``: name → ``(N,)`` bool, pool rows that are one
    of the concept's own examples (never drawn as its random side).

    Each run draws half the concept's examples (at least :data:`MIN_SAMPLE`) and as many pool images, independently
    of every other run, and trains its own CAV; Kim et al. (ICML 2018) draw a new random concept per run, and a
    resampled concept sample carries the concept folder's own sampling variation into the spread. Each of
    ``references`` reference concepts is a set of ``n_c`` pool images, run exactly as the concept is (its halves
    against pool images it does not contain): so the reference means have the null distribution of the concept's
    mean score, including what one fixed folder of ``n_c`` images contributes.
    """
    if runs < 2:
        raise InvalidInputError(f"TCAV needs at least 2 runs per concept, got {runs}")
    if references < 19:
        raise InvalidInputError(f"TCAV's reference needs at least 19 reference concepts (p ≥ 1/(K+1)), got {references}")
    pool = np.asarray(pool)
    names = list(concepts)
    blocks = [pool, *(np.asarray(concepts[c]) for c in names)]
    dim = pool.shape[1]
    if any(b.ndim != 2 or b.shape[1] != dim for b in blocks) or gradients.shape[1:] != (dim,):
        raise InvalidInputError(f"layer {layer!r}: activations and gradients must share one width; got pool "
                                f"{pool.shape}, gradients {gradients.shape}, concepts "
                                f"{', '.join(f'{c} {np.shape(concepts[c])}' for c in names)}")
    everything = np.concatenate(blocks).astype(np.float64, copy=False)
    mean = everything.mean(axis=0)  # a shift of every point changes no CAV (the intercept is free): conditioning only
    gram = np.zeros((len(everything), len(everything)))
    proj = np.zeros((len(gradients), len(everything)))
    for start in range(0, dim, _CHUNK_COLUMNS):
        cols = slice(start, start + _CHUNK_COLUMNS)
        x = everything[:, cols] - mean[cols]
        gram += x @ x.T
        proj += np.asarray(gradients[:, cols], np.float64) @ x.T
    norms = np.linalg.norm(np.asarray(gradients, np.float64), axis=1)
    proj /= np.where(norms > 0, norms, 1.0)[:, None]
    n_pool = len(pool)
    offsets = np.cumsum([n_pool] + [len(concepts[c]) for c in names])
    reference_cache: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}

    def reference(size: int) -> tuple[np.ndarray, np.ndarray, float]:
        if size not in reference_cache:
            m = _sample_size(size)
            if n_pool < size + m:
                raise InvalidInputError(f"layer {layer!r}: the random pool has {n_pool} images; reference concepts "
                                        f"of {size} need at least {size + m}")
            rng = np.random.default_rng([seed, 1, size])
            order = np.argsort(rng.random((references, n_pool)), axis=1)
            folders, rest = order[:, :size], order[:, size:]
            pick = _draw(rng, references * runs, size, m).reshape(references, runs, m)
            pos = np.take_along_axis(folders[:, None, :], pick, axis=2).reshape(-1, m)
            pick = _draw(rng, references * runs, n_pool - size, m).reshape(references, runs, m)
            neg = np.take_along_axis(rest[:, None, :], pick, axis=2).reshape(-1, m)
            scores, cosines, _ = _run_scores(gram, proj, pos, neg, accuracy=False)
            checked = min(len(pos), 20 * runs)  # the reference's CAV accuracy (near 0.5), from its first 20 concepts
            *_, accs = _run_scores(gram, proj, pos[:checked], neg[:checked], accuracy=True)
            reference_cache[size] = (scores.reshape(references, runs).mean(axis=1),
                                     cosines.reshape(references, runs).mean(axis=1), float(accs.mean()))
        return reference_cache[size]

    out = []
    for i, name in enumerate(names):
        size = len(concepts[name])
        m = _sample_size(size)
        if size < 2:
            raise InvalidInputError(f"concept {name!r} has {size} example(s); TCAV needs at least 2 at layer level")
        null, null_cosines, null_acc = reference(size)
        allowed = np.flatnonzero(~np.asarray(overlap[name], bool)) if overlap and name in overlap else np.arange(n_pool)
        if len(allowed) < m:
            raise InvalidInputError(f"concept {name!r}: the random pool has {len(allowed)} images apart from the "
                                    f"concept's own; a run needs {m}")
        rng = np.random.default_rng([seed, 0, i])
        pos = offsets[i] + _draw(rng, runs, size, m)
        neg = allowed[_draw(rng, runs, len(allowed), m)]
        scores, cosines, accs = _run_scores(gram, proj, pos, neg, accuracy=True)
        out.append(ConceptRuns(concept=name, layer=layer, target=target, scores=scores, cosines=cosines,
                               accuracies=accs, reference=null, reference_cosines=null_cosines,
                               reference_accuracy=null_acc, size=size, sample=m, pool=n_pool))
    return out


def _layer_values(handle: ModelHandle, images: np.ndarray, layers: Sequence[str], device,
                  batch: int = 64) -> dict[str, np.ndarray]:
    """Activations of every layer in ``layers`` for ``images`` (on the model's grid), flattened ``(N, D)`` float32,
    from one forward pass per batch (hooks registered here and removed in ``finally``)."""
    modules = dict(handle.module.named_modules())
    seen: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}

    def keep(layer: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            seen[layer].append(out.detach().reshape(out.shape[0], -1).float().cpu().numpy())
        return hook

    handles = [modules[layer].register_forward_hook(keep(layer)) for layer in layers]
    try:
        for start in range(0, len(images), batch):
            with torch.inference_mode():
                handle.module(prepare_batch(handle.preprocessing, images[start:start + batch], device))
    finally:
        for h in handles:
            h.remove()
    return {layer: np.concatenate(parts) for layer, parts in seen.items()}


def _layer_gradients(handle: ModelHandle, scorer: ClassScores, images: np.ndarray, layer: str, k: int, device,
                     batch: int = 64) -> np.ndarray:
    """The class-``k`` score's gradient with respect to ``layer`` at each image, flattened ``(N, D)``."""
    module = dict(scorer.named_modules())[f"model.{layer}"]
    out = []
    for start in range(0, len(images), batch):
        x = prepare_batch(handle.preprocessing, images[start:start + batch], device).requires_grad_(True)
        with torch.enable_grad():
            g = LayerGradientXActivation(scorer, module, multiply_by_inputs=False).attribute(x, target=k)
        out.append(g.reshape(g.shape[0], -1).float().cpu().numpy())
    return np.concatenate(out)


def _row_digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.sha256(np.ascontiguousarray(a).tobytes()).digest() for a in images]


def tcav_runs(handle: ModelHandle, inputs: np.ndarray, concepts: Sequence[ConceptSet], layers: Sequence[str],
              target: int | str, pool: np.ndarray, *, runs: int = RUNS, references: int = REFERENCES, seed: int = 0,
              progress: Progress | None = None) -> list[ConceptRuns]:
    """TCAV evidence for every concept × layer (:func:`layer_runs` on the model's activations and gradients).

    ``inputs``: ``(n, C, *spatial)`` images of the class being explained; ``pool``: ``(N, C, *spatial)`` the random
    images (cases of the other classes), on the model's grid like the concepts'. A pool image that is also one of a
    concept's examples is never drawn as that concept's random side. The test is made in
    :mod:`evaluation.concept_significance`.
    """
    if not handle.hookable:
        raise ExplainerError("TCAV hooks layers, which TorchScript models do not allow")
    if not concepts:
        raise InvalidInputError("no concept given")
    names = [c.name for c in concepts]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"concepts named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    _check_layers(handle, layers)
    k = handle.class_index(target)
    device = module_device(handle.module)
    scorer = ClassScores(handle)
    scorer.eval()
    pool_digests = _row_digests(pool)
    overlap = {}
    for c in concepts:
        own = set(_row_digests(c.images))
        overlap[c.name] = np.array([d in own for d in pool_digests], bool)
    steps = len(layers) + 1
    if progress:
        progress(0, steps)
    concept_values = {c.name: _layer_values(handle, c.images, layers, device) for c in concepts}
    pool_values = _layer_values(handle, pool, layers, device)
    out = []
    for i, layer in enumerate(layers):
        if progress:
            progress(i + 1, steps)
        out += layer_runs({c.name: concept_values[c.name][layer] for c in concepts}, pool_values[layer],
                          _layer_gradients(handle, scorer, inputs, layer, k, device), runs=runs,
                          references=references, seed=seed, overlap=overlap, layer=layer, target=k)
    if progress:
        progress(steps, steps)
    return out


def concept_vector(handle: ModelHandle, concept: ConceptSet, random: ConceptSet, layer: str,
                   seed: int = 0) -> tuple[np.ndarray, float]:
    """One CAV: the unit direction in ``layer``'s flattened activations from ``random`` towards ``concept``,
    and its held-out accuracy."""
    _check_layers(handle, [layer])
    device = module_device(handle.module)
    module = dict(handle.module.named_modules())[layer]
    acts = []
    for images in (random.images, concept.images):
        with torch.inference_mode():
            out = LayerActivation(handle.module, module).attribute(prepare_batch(handle.preprocessing, images, device))
        acts.append(out.reshape(len(images), -1).float().cpu())
    labels = torch.cat([torch.zeros(len(acts[0])), torch.ones(len(acts[1]))]).long()
    classifier = LinearCAV(seed)
    stats = classifier.train_and_eval([(torch.cat(acts), labels)])
    w = classifier.weights()[1].numpy()
    return w / (np.linalg.norm(w) + 1e-12), float(stats["accs"])


def conceptual_sensitivity(handle: ModelHandle, images: np.ndarray, cav: np.ndarray, layer: str,
                           target: int | str) -> np.ndarray:
    """Per image, the directional derivative of the class score along the CAV at ``layer`` (Kim et al., eq. 1):
    positive when moving the activations towards the concept raises the score. ``(N,)``."""
    k = handle.class_index(target)
    device = module_device(handle.module)
    scorer = ClassScores(handle)
    layer_module = dict(scorer.named_modules())[f"model.{layer}"]
    x = prepare_batch(handle.preprocessing, images, device).requires_grad_(True)
    with torch.enable_grad():
        grads = LayerGradientXActivation(scorer, layer_module, multiply_by_inputs=False).attribute(x, target=k)
    flat = grads.reshape(len(images), -1).float().cpu().numpy()
    return flat @ cav.astype(np.float32)


def tcav_inputs(cohort: Cohort, target: int, n: int, class_name: str = "") -> list[Case]:
    """The cases TCAV's directional derivatives are taken on: up to ``n`` labelled cases of class ``target``,
    held-out ones (``split == test``) first; fewer than :data:`MIN_EXAMPLES` is an :class:`InvalidInputError` naming
    the class and the cohort."""
    positives = [c for c in cohort.cases if c.label == target]
    positives.sort(key=lambda c: c.attributes.get("split") != "test")
    if len(positives) < MIN_EXAMPLES:
        raise InvalidInputError(f"TCAV needs at least {MIN_EXAMPLES} labelled cases of class "
                                f"{class_name or target!r} in cohort {cohort.name!r}; found {len(positives)}")
    return positives[:n]


def reference_count(references: int, n_concepts: int, n_layers: int, alpha: float = 0.05) -> int:
    """Reference concepts the null needs: at least ``references``, and enough that the smallest permutation p-value
    (1 / (references + 1)) can pass a Bonferroni bound over both tails of every concept and layer at ``alpha``."""
    return max(references, int(np.ceil(2 * n_concepts * n_layers / alpha)) - 1)


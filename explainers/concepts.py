"""Concept attributions: Captum's TCAV (Kim et al., ICML 2018) with the paper's significance test.

A concept is a set of model-shaped example images. For each concept and layer, a linear classifier separates
the concept's activations from a random set's (the CAV); the TCAV score is the fraction of the class's
inputs whose class score rises along the CAV. Runs against ``n_random`` random sets give a distribution;
random-vs-random runs give the null; a two-sided t-test compares them, and Holm's method corrects the
p-values across every concept and layer tested together.

CAVs and activations are cached on disk by Captum under a folder keyed by the model hash, with concept ids
derived from the concept's image content, so a changed concept or model never reuses a stale CAV.
"""
from __future__ import annotations

import difflib
import hashlib
import operator
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerActivation, LayerGradientXActivation
from captum.concept import TCAV, Classifier, Concept
from scipy.stats import ttest_ind
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from data_adapters.cohort import load_image_batch
from data_adapters.errors import ExplainerError, InvalidInputError, UnknownNameError
from data_adapters.hashing import json_hash
from data_adapters.identifiers import mask_path
from data_adapters.preprocessing import convert_channels, fit_image, fits, prepare_batch
from data_adapters.readers import is_image_file, read_image
from data_adapters.records import (
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


@dataclass(frozen=True, eq=False)
class ConceptSet:
    """A named set of example images ``(N, C, *spatial)`` as read (before the model's preprocessing)."""

    name: str
    images: np.ndarray
    source: str

    @property
    def content_hash(self) -> str:
        return json_hash("concept", self.images.shape,
                         hashlib.sha256(np.ascontiguousarray(self.images).tobytes()).hexdigest())


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
    return ConceptSet(name=name, images=images, source=f"folder {folder}")


def concept_from_filter(cohort: Cohort, expression: str, *, limit: int = 60, seed: int = 0,
                        handle: ModelHandle | None = None) -> ConceptSet:
    """Cases whose attribute matches ``attr == value`` (or ``!=``), at most ``limit``, drawn with ``seed``."""
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
    chosen = [c for c in cohort.cases if compare(str(c.label if attr == "label" else c.attributes.get(attr)), value)]
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


def tcav_scores(handle: ModelHandle, inputs: np.ndarray, concepts: Sequence[ConceptSet], layers: Sequence[str],
                target: int | str, randoms: Sequence[ConceptSet], cav_dir: str | Path, *,
                progress: Progress | None = None) -> list[ConceptScore]:
    """TCAV for every concept × layer against every random set, with significance.

    ``inputs``: ``(N, C, *spatial)`` images of the class being explained. Needs at least 3 random sets.
    """
    if isinstance(handle.module, torch.jit.ScriptModule):
        raise ExplainerError("TCAV hooks layers, which TorchScript models do not allow")
    if len(randoms) < 3:
        raise InvalidInputError(f"TCAV's significance test needs at least 3 random concepts, got {len(randoms)}")
    if not concepts:
        raise InvalidInputError("no concept given")
    _check_layers(handle, layers)
    k = handle.class_index(target)
    device = module_device(handle.module)
    scorer = ClassScores(handle)
    scorer.eval()

    def captum_concept(i: int, c: ConceptSet) -> Concept:
        x = prepare_batch(handle.preprocessing, c.images, device)
        return Concept(id=i, name=re.sub(r"\W+", "_", c.name), data_iter=[x[j:j + 64] for j in range(0, len(x), 64)])

    everything = [*concepts, *randoms]
    cs = [captum_concept(i, c) for i, c in enumerate(concepts)]
    rs = [captum_concept(len(concepts) + i, r) for i, r in enumerate(randoms)]
    # Captum caches CAVs by (model id, concept ids, layer): a folder per model and concept content keeps it honest
    run_key = json_hash("tcav", LinearCAV.__name__, 3, handle.weights_hash, [c.content_hash for c in everything])[:24]
    tcav = TCAV(scorer, layers=[f"model.{layer}" for layer in layers], model_id=run_key,
                classifier=LinearCAV(), save_path=str(cav_dir) + "/")
    x = prepare_batch(handle.preprocessing, inputs, device)
    experiments = [[c, r] for c in cs for r in rs[1:]] + [[rs[0], r] for r in rs[1:]]
    if progress:
        progress(0, 2)
    with torch.enable_grad():
        cavs = tcav.compute_cavs(experiments)
        if progress:
            progress(1, 2)
        results = tcav.interpret(x, experimental_sets=experiments, target=k)  # input gradients computed once
    if progress:
        progress(2, 2)

    def key(a: Concept, b: Concept) -> str:
        return f"{a.id}-{b.id}"

    rows = []
    for layer in layers:
        name = f"model.{layer}"
        null = np.array([float(results[key(rs[0], r)][name]["sign_count"][0]) for r in rs[1:]])
        for concept, c in zip(concepts, cs):
            runs = np.array([float(results[key(c, r)][name]["sign_count"][0]) for r in rs[1:]])
            accs = [float(cavs[key(c, r)][name].stats["accs"]) for r in rs[1:]]
            same = np.allclose(runs, runs[0]) and np.allclose(null, null[0]) and np.isclose(runs[0], null[0])
            with warnings.catch_warnings():  # near-constant runs: scipy warns of precision loss, the p is still right
                warnings.simplefilter("ignore", RuntimeWarning)
                p = 1.0 if same else float(ttest_ind(runs, null, equal_var=False).pvalue)
            rows.append(dict(concept=concept.name, layer=layer, target=k, score=float(runs.mean()),
                             spread=float(runs.std(ddof=1)), null_score=float(null.mean()),
                             null_spread=float(null.std(ddof=1)), p_value=p if np.isfinite(p) else 1.0,
                             cav_accuracy=float(np.mean(accs)), runs=len(runs)))
    adjusted = holm(np.array([r["p_value"] for r in rows]))
    out = []
    for row, p_adj in zip(rows, adjusted):
        separable = row["cav_accuracy"] >= MIN_CAV_ACCURACY
        significant = bool(p_adj < ALPHA and separable)
        if not separable:
            verdict = f"layer cannot separate this concept (CAV accuracy {row['cav_accuracy']:.2f})"
        elif significant:
            direction = "raises" if row["score"] > row["null_score"] else "lowers"
            verdict = f"significant: the concept {direction} the class score (adjusted p {p_adj:.2g})"
        else:
            verdict = f"not significant (adjusted p {p_adj:.2g})"
        out.append(ConceptScore(**row, p_adjusted=float(p_adj), significant=significant, verdict=verdict))
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

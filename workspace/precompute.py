"""Batch precompute: predictions, uncertainty and saliency maps for a whole cohort, written to the cache the app reads.

The cohort is cut into shards of consecutive cases (:data:`SHARD`). A shard is one unit of work, done by
:func:`compute_shard` wherever it runs (here, batched on the device this machine has, or in a Ray actor on a cluster
node); it writes its predictions and uncertainty as small Parquet parts and its maps into the sharded map store
(:class:`workspace.cache.ShardStore`), then a ``done`` marker, last. A run killed part-way resumes: shards with a
marker are skipped, nothing written is computed again. When every shard is done, the parts are joined into the very
files :meth:`Workspace.predictions` and :func:`workspace.uncertainty.uncertainty` read, so the dashboard opens on them.

With Ray (``ray="auto"`` or a cluster address), shards become a Ray Data dataset mapped by an actor pool: each actor
loads the model once (on a GPU when the cluster has them: ``num_gpus`` per actor) and computes shards with one CPU
thread per actor, so workers do not fight over cores. The same :func:`compute_shard` runs in both.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from data_adapters.cohort import load_image_batch
from data_adapters.errors import InvalidInputError
from data_adapters.hashing import json_hash
from data_adapters.tables import PredictionTable
from explainers import uncertainty as uncertainty_lib
from explainers.device import best_device
from explainers.inference import predict_cases
from explainers.saliency import SALIENCY_METHODS, explain
from workspace.cache import NUMERICS, atomic_write
from workspace.store import Workspace
from workspace.uncertainty import uncertainty_path, uncertainty_table

Progress = Callable[[int, int], None]
#: cases per shard: a map shard of 1024 128² maps is 64 MB, a thousand shards hold a million maps
SHARD = 1024


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to compute: model and cohort (paths the workers open themselves), maps and uncertainty."""

    workspace: str
    model: str
    cohort: str
    methods: tuple[str, ...] = ()
    target: int | None = None
    uncertainty: str | None = None
    shard_size: int = SHARD

    def key(self, weights_hash: str, cohort_hash: str) -> str:
        return json_hash("precompute", NUMERICS, weights_hash, cohort_hash, self.methods, self.target,
                         self.uncertainty, self.shard_size)[:32]


@dataclasses.dataclass
class Summary:
    shards: int
    computed: int
    skipped: int
    cases: int
    seconds: float
    maps: int
    outputs: list[str]


def _open(plan: Plan):
    ws = Workspace(plan.workspace)
    handle = ws.load_model(ws.resolve_model(plan.model))
    handle.module.to(best_device())
    cohort = ws.cohort_for(handle, ws.resolve_cohort(plan.cohort))
    return ws, handle, cohort


def run_folder(ws: Workspace, plan: Plan, handle, cohort) -> Path:
    return ws.cache / "precompute" / plan.key(handle.weights_hash, cohort.content_hash)


def compute_shard(plan: Plan, index: int, opened=None) -> int:
    """Compute shard ``index`` of ``plan`` (skipped when its marker exists); returns the cases computed (0 when
    skipped). ``opened``: ``(workspace, handle, cohort)`` already loaded (an actor keeps them)."""
    ws, handle, cohort = opened or _open(plan)
    folder = run_folder(ws, plan, handle, cohort)
    marker = folder / f"done-{index:05d}.json"
    if marker.is_file():
        return 0
    start, stop = index * plan.shard_size, min(len(cohort), (index + 1) * plan.shard_size)
    cases = list(cohort.cases[start:stop])
    preds = predict_cases(handle, cases)
    frame = PredictionTable.of([p.case_id for p in preds], np.array([p.probabilities for p in preds], np.float64)
                               .reshape(len(preds), handle.n_classes), task=handle.task).frame
    atomic_write(folder / f"pred-{index:05d}.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    if plan.uncertainty:
        run = uncertainty_lib.UNCERTAINTY_METHODS.get(plan.uncertainty)
        samples = uncertainty_lib.DEFAULT_SAMPLES.get(plan.uncertainty)
        draws = run([handle], cases, samples, 0, None)
        unc = uncertainty_table(cases, draws, plan.uncertainty, handle.task).frame
        atomic_write(folder / f"unc-{index:05d}.parquet", lambda tmp: unc.to_parquet(tmp, index=False))
    target = handle.n_classes - 1 if plan.target is None else plan.target
    store = ws.attribution_shards()
    for method in plan.methods:
        name = f"{handle.weights_hash[:16]}-{cohort.content_hash[:16]}-{method}-{target}-{index:05d}"
        if store.done(name):
            continue
        keys = [ws.attribution_key(handle, c, method, target, None) for c in cases]
        maps = explain(handle, load_image_batch(cases, handle.preprocessing), [c.case_id for c in cases], method,
                       target)
        store.write(name, maps, keys)
    atomic_write(marker, lambda tmp: tmp.write_text(json.dumps({"cases": len(cases), "at": time.time()})))
    return len(cases)


class ShardActor:
    """A Ray Data actor: opens the model and cohort once, then computes the shards it is given."""

    def __init__(self, plan: Plan, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        self.plan = plan
        self.opened = _open(plan)

    def __call__(self, batch: dict) -> dict:
        done = [compute_shard(self.plan, int(i), self.opened) for i in batch["shard"]]
        return {"shard": batch["shard"], "cases": np.asarray(done)}


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address must answer before Ray is asked (Ray itself retries an unreachable one for minutes)."""
    import socket

    host, _, port = address.split("://")[-1].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"--ray {address}: no Ray cluster answers there ({e}); give the address `ray start "
                                "--head` printed (HOST:PORT), or auto for a local instance") from e


def _run_ray(plan: Plan, todo: list[int], address: str, workers: int | None, progress: Progress | None) -> None:
    import ray

    started_here = not ray.is_initialized()
    if started_here and address != "auto":
        _reachable(address)
    if started_here:
        # auto: the cluster this machine belongs to (`ray start`), else a Ray instance started here
        kwargs = {"address": address} if address != "auto" else ({"num_cpus": workers} if workers else {})
        try:
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InvalidInputError(f"--ray {address}: no Ray cluster could be reached or started ({e}); use auto "
                                    "for a local instance, or the address `ray start --head` printed") from e
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        pool = workers or max(1, gpus or int(resources.get("CPU", 1)))
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        dataset = ray.data.from_items([{"shard": i} for i in todo], override_num_blocks=len(todo))
        mapped = dataset.map_batches(ShardActor, fn_constructor_args=(plan,), batch_size=1,
                                     compute=ray.data.ActorPoolStrategy(size=pool),
                                     num_gpus=1 if gpus else 0, num_cpus=1)
        done = 0
        for _ in mapped.iter_rows():
            done += 1
            if progress:
                progress(done, len(todo))
    finally:
        if started_here:
            ray.shutdown()


def precompute(plan: Plan, *, ray: str | None = None, workers: int | None = None,
               progress: Progress | None = None) -> Summary:
    """Run ``plan`` over every shard not yet done (here, or on Ray: ``ray`` = ``auto`` for the cluster this machine
    belongs to or else a Ray instance started here, or a cluster address), then join the parts into the cache.
    ``workers``: Ray actors (default: one per GPU, else per CPU)."""
    for method in plan.methods:
        SALIENCY_METHODS.get(method)  # an unknown name fails before any work
    if plan.uncertainty and plan.uncertainty not in ("mc_dropout", "tta"):
        raise InvalidInputError(f"--uncertainty {plan.uncertainty!r}: precompute runs mc_dropout or tta (an "
                                "ensemble needs several models; the Uncertainty page computes it)")
    t0 = time.perf_counter()
    ws, handle, cohort = _open(plan)
    if len(cohort) == 0:
        raise InvalidInputError(f"cohort {cohort.name!r} has no case that loaded; see `glassbox check`")
    folder = run_folder(ws, plan, handle, cohort)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.json").write_text(json.dumps(dataclasses.asdict(plan)))
    n_shards = -(-len(cohort) // plan.shard_size)
    todo = [i for i in range(n_shards) if not (folder / f"done-{i:05d}.json").is_file()]
    skipped = n_shards - len(todo)
    if todo and ray:
        _run_ray(plan, todo, ray, workers, progress)
    else:
        for k, i in enumerate(todo):
            compute_shard(plan, i, (ws, handle, cohort))
            if progress:
                progress(k + 1, len(todo))
    outputs = _join(ws, plan, handle, cohort, folder, n_shards)
    maps = sum(1 for _ in plan.methods) * len(cohort)
    return Summary(shards=n_shards, computed=len(todo), skipped=skipped, cases=len(cohort),
                   seconds=time.perf_counter() - t0, maps=maps, outputs=outputs)


def _join(ws: Workspace, plan: Plan, handle, cohort, folder: Path, n_shards: int) -> list[str]:
    """The parts as the cache files the app reads (written atomically, checked against the cohort's cases)."""
    missing = [i for i in range(n_shards) if not (folder / f"done-{i:05d}.json").is_file()]
    if missing:
        raise InvalidInputError(f"{len(missing)} shard(s) not done (first: {missing[0]}); run the command again to "
                                "finish them")
    out = []
    preds = pd.concat([pd.read_parquet(folder / f"pred-{i:05d}.parquet") for i in range(n_shards)],
                      ignore_index=True)
    if preds["case_id"].tolist() != cohort.case_ids:
        raise InvalidInputError("the shards' cases are not the cohort's: remove "
                                f"{folder} and run again")
    target = ws.prediction_path(handle, cohort)
    atomic_write(target, lambda tmp: preds.to_parquet(tmp, index=False))
    out.append(str(target))
    if plan.uncertainty:
        unc = pd.concat([pd.read_parquet(folder / f"unc-{i:05d}.parquet") for i in range(n_shards)],
                        ignore_index=True)
        target = uncertainty_path(ws, [handle], cohort, plan.uncertainty)
        atomic_write(target, lambda tmp: unc.to_parquet(tmp, index=False))
        out.append(str(target))
    if plan.methods:
        out.append(str(ws.attribution_shards().root))
    return out


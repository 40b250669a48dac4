"""A million-case cohort: loading, re-opening, and what Home, Subgroups and the worklist compute on each rerun.

Uses `glassbox demo --scale N` (rows sharing --distinct image files; a million distinct files is not practical
here). Prints each step's seconds, and the first check per case against the way it was done before this
benchmark existed (every image decoded and hashed row by row, one process), measured in the same run on the
distinct files.

    .venv/bin/python benchmarks/million_cases.py [--rows 1000000] [--distinct 5000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from data_adapters.cohort import _resolve, load_manifest  # noqa: E402
from data_adapters.demo.synthesis import generate_scale_cohort  # noqa: E402
from data_adapters.hashing import path_hash  # noqa: E402
from data_adapters.readers import read_image  # noqa: E402
from evaluation.cohort_summary import group_counts, with_bands  # noqa: E402
from evaluation.subgroups import labelled_frame, subgroup_report  # noqa: E402
from evaluation.worklist import WorklistFilter, select, worklist  # noqa: E402
from workspace.store import Workspace, default_workspace  # noqa: E402


def timed(label: str, fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t
    print(f"  {label:58s} {dt:8.2f} s")
    return out, dt


def naive_check(manifest: Path) -> int:
    """Before: each row's image and mask decoded (every pixel) and hashed, one row at a time."""
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    base = manifest.parent
    for row in frame.to_dict("records"):
        path = _resolve(base, row["image"], [base])
        read_image(path)
        path_hash(path)
        if row.get("mask"):
            mask = _resolve(base, row["mask"], [base])
            read_image(mask)
    return len(frame)


#: the last commit before the cohort table: its loader is "today's way" of the issue, run from git when available
BEFORE = "ce74d68"


def loader_before():
    """``load_manifest`` as it was at :data:`BEFORE` (from git), or None outside a git checkout."""
    import importlib.util
    import subprocess

    try:
        source = subprocess.run(["git", "show", f"{BEFORE}:data_adapters/cohort.py"], capture_output=True, text=True,
                                check=True, cwd=Path(__file__).resolve().parent.parent).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "cohort_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cohort_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cohort_before"] = module
    spec.loader.exec_module(module)
    return module.load_manifest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--distinct", type=int, default=5000)
    ap.add_argument("--workspace", default=str(default_workspace()))
    a = ap.parse_args()
    print(f"{os.cpu_count()} CPU(s); {a.rows} rows sharing {a.distinct} image files")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scale"
        manifest, _ = timed("generate (demo --scale)", generate_scale_cohort, folder, a.rows, distinct=a.distinct)
        pool = folder / "pool" / "manifest.csv"

        print("first check, per case, on the distinct files:")
        n, t_naive = timed("naive: decode + hash row by row, one process", naive_check, pool)
        before = loader_before()
        t_before = timed(f"the loader at {BEFORE} (git)", before, pool)[1] if before else None
        _, t_header = timed("now: headers + chunk CRCs, in worker processes", load_manifest, pool, check="header")
        print(f"  per case: naive {t_naive / n * 1e6:.0f} µs, "
              + (f"at {BEFORE} {t_before / n * 1e6:.0f} µs, " if t_before else "")
              + f"now {t_header / n * 1e6:.0f} µs: {t_naive / t_header:.1f}x the naive loop"
              + (f", {t_before / t_header:.1f}x the loader before" if t_before else ""))

        ws = Workspace(Path(tmp) / "ws")
        source = Workspace(a.workspace)
        handle = source.load_model(source.model_paths()["v2"])
        print(f"{a.rows} rows:")
        cohort, t_first = timed("first open (checks, writes the cohort table)", ws.cohort_for, handle, manifest)
        cohort, t_again = timed("re-open, unchanged (the cohort table)", ws.cohort_for, handle, manifest)
        preds, _ = timed(f"predictions (each of {a.distinct} distinct images once)", ws.predictions, handle, cohort)
        preds, _ = timed("predictions again (cache)", ws.predictions, handle, cohort)
        print("what a page computes on each rerun:")
        frame, _ = timed("cohort frame with bands", lambda: with_bands(cohort.frame()))
        timed("Home: counts by site", group_counts, cohort, "site", handle.class_names)
        timed("Home: regroup by sex × age band", group_counts, cohort, ["sex", "age_band"], handle.class_names)
        table, t_work = timed("worklist table", lambda: worklist(frame.merge(preds.frame, on="case_id", how="left"),
                                                               class_index=1, threshold=0.5, n_classes=2,
                                                               class_names=handle.class_names))
        timed("worklist filter: site B, false negatives", select, table,
              WorklistFilter(preset="all cases", outcomes=("FN",), groups=(("site", ("B",)),)))
        timed("worklist preset: most confident errors", select, table, WorklistFilter(preset="most confident errors"))
        labelled, _ = timed("Subgroups: labelled frame", labelled_frame, frame, preds, 1)
        timed("Subgroups: table by site, 1000 resamples", subgroup_report, labelled, "site", threshold=0.5)
        timed("Subgroups: regroup by sex × age band, 1000 resamples", subgroup_report, labelled,
              ["sex", "age_band"], threshold=0.5)
        print(f"re-open {t_again:.2f} s (first open {t_first:.1f} s: {t_first / t_again:.0f}x)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

"""Suppression that holds against arithmetic: no hidden group, and no sum of hidden groups under k, follows from
what a board's views show together (totals, margins, intersections, other pages).

The reference is an independent search, not the product's: every union of atoms and every sum of hidden cells is
tested for membership of the published counts' row space with :func:`scipy.linalg.null_space` (and confirmed with
:func:`numpy.linalg.matrix_rank`), and every hidden cell's feasible range is bounded with
:func:`scipy.optimize.linprog`. The search is shown to find the disclosures of the old rule (one table at a time,
one extra group hidden only when exactly one is) before it passes the new decision.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import null_space
from scipy.optimize import linprog

from data_adapters.records import Rejection
from evaluation.cohort_summary import board_decision, group_columns, with_bands
from evaluation.disclosure import audit, smallest_derivable_sum
from evaluation.suppression import board_suppression, rejections_by_reason, suppression


def old_suppression(sizes: dict, k: int) -> set:
    """The rule as shipped before (commit 4118a90): groups under k hidden; when exactly one is, the smallest other
    group too; intersections one level of groups, their margins not cross-checked."""
    sizes = {str(g): int(n) for g, n in sizes.items() if str(g) != "overall"}
    hidden = {g for g, n in sizes.items() if n < k}
    if len(hidden) == 1 and len(sizes) > 1:
        hidden.add(min((n, g) for g, n in sizes.items() if g not in hidden)[1])
    return hidden


# -- the independent search ---------------------------------------------------------------------------------------

def cells_of(frame: pd.DataFrame, attributes, populations):
    """Every table a board can open: (population name, by, group name, atom mask) over the atoms of ``frame``'s
    finest cross-classification (here: one row of ``frame`` per atom, with ``n``)."""
    for pop, mask in populations.items():
        for r in range(0, len(attributes) + 1):
            for by in itertools.combinations(attributes, r):
                sub = frame[mask]
                if not by:
                    yield pop, by, "overall", mask.copy()
                    continue
                yield pop, by, "overall", mask.copy()
                for key, rows in sub.groupby(list(by)).groups.items():
                    key = key if isinstance(key, tuple) else (key,)
                    m = np.zeros(len(frame), bool)
                    m[frame.index.get_indexer(rows)] = True
                    yield pop, by, " · ".join(map(str, key)), m


def publication(frame, attributes, populations, hidden_of):
    """The published and hidden atom sets when each table hides ``hidden_of(pop, by, sizes)``; each hidden set with
    whether it is a cell of a table of at most two attributes (a split population counts as one)."""
    tables: dict = {}
    for pop, by, name, m in cells_of(frame, attributes, populations):
        tables.setdefault((pop, by), {})[name] = m
    published, hidden = [], {}
    for (pop, by), groups in tables.items():
        sizes = {g: int(frame.loc[m, "n"].sum()) for g, m in groups.items()}
        gone = hidden_of(pop, by, sizes)
        order = len(by) + ("=" in pop)
        for g, m in groups.items():
            if g in gone:
                hidden[m.tobytes()] = (m, hidden.get(m.tobytes(), (m, False))[1] or order <= 2)
            else:
                published.append(m)
    shown = {m.tobytes() for m in published}  # a count hidden in one table but shown in another is published
    return published, [h for key, h in hidden.items() if key not in shown]


def search(counts: np.ndarray, published: list, hidden: list, k: int, *, max_atoms: int = 14,
           max_subset: int = 3) -> dict:
    """Every derivable small count the published counts give: all unions of atoms (when there are at most
    ``max_atoms``), all sums of up to ``max_subset`` distinct hidden cells (all of them when there are at most 12),
    and each hidden cell's range under non-negativity: disclosed when it is pinned to one value, or, for a cell of
    a table of at most two attributes, bounded below k (a finer table's cell reads "<k" anyway). Returns counts of
    what was checked and what was found."""
    n = len(counts)
    R = np.unique(np.array(published, float).reshape(-1, n), axis=0)
    N = null_space(R) if len(R) else np.eye(n)
    H = np.array([m for m, _ in hidden], float).reshape(-1, n)
    standard = [s for _, s in hidden]
    combos = []
    if n <= max_atoms:  # every union of atoms: all 0/1 vectors
        combos.append(np.array(list(itertools.product([0, 1], repeat=n)), float)[1:])
    sizes = range(1, len(H) + 1) if len(H) <= 12 else range(1, max_subset + 1)
    for size in sizes:
        chosen = list(itertools.combinations(range(len(H)), size))
        if chosen:
            combos.append(np.array([H[list(c)].sum(axis=0) for c in chosen]))
    V = np.vstack(combos) if combos else np.zeros((0, n))
    values = V @ counts
    residual = np.abs(V @ N).max(axis=1) if N.shape[1] else np.zeros(len(V))
    suspect = np.flatnonzero((residual < 1e-8) & (values >= 1) & (values <= k - 1))
    rank = np.linalg.matrix_rank(R) if len(R) else 0
    exact = [V[i] for i in suspect if np.linalg.matrix_rank(np.vstack([R, V[i]])) == rank]
    bounded = []
    b = R @ counts
    for h, coarse in zip(H, standard):
        if not 1 <= counts @ h <= k - 1:
            continue
        A, rhs = (R, b) if len(R) else (None, None)
        low = linprog(h, A_eq=A, b_eq=rhs, bounds=(0, None), method="highs")
        high = linprog(-h, A_eq=A, b_eq=rhs, bounds=(0, None), method="highs")
        lo = low.fun if low.status == 0 else 0.0
        hi = -high.fun if high.status == 0 else np.inf  # unbounded: nothing caps it
        if hi - lo < 0.5 or (coarse and hi < k):
            bounded.append((h, lo, hi))
    return {"combinations": len(V), "ranges": 2 * len(H), "exact": exact, "bounded": bounded,
            "disclosures": len(exact) + len(bounded)}


def atoms_frame(cohort_frame: pd.DataFrame, attributes) -> pd.DataFrame:
    work = cohort_frame[list(attributes)].astype("string").fillna("(missing)").astype(str)
    work["_labelled"] = cohort_frame["label"].notna().to_numpy()
    return work.groupby([*attributes, "_labelled"]).size().rename("n").reset_index()


def populations_of(atoms: pd.DataFrame, split: str | None = None) -> dict:
    pops = {"all": np.ones(len(atoms), bool), "labelled": atoms["_labelled"].to_numpy(bool)}
    if split:
        for value in sorted(atoms[split].unique()):
            pops[f"labelled {split}={value}"] = pops["labelled"] & (atoms[split] == value).to_numpy()
    return pops


def new_hidden_of(decision, split=None):
    def hidden_of(pop, by, sizes):
        where = {split: [pop.split("=")[1]]} if "=" in pop else None
        return set(decision.for_table(sizes, list(by), where=where, labelled=pop != "all").hidden)
    return hidden_of


def old_hidden_of(pop, by, sizes):
    return old_suppression(sizes, K_OLD[0])


K_OLD = [10]


def cases_from(atoms: pd.DataFrame) -> pd.DataFrame:
    """One row per case from an atom table (attributes and ``n``); a label where ``_labelled``."""
    rows = atoms.loc[atoms.index.repeat(atoms["n"])].reset_index(drop=True)
    rows["label"] = np.where(rows.pop("_labelled"), 1.0, np.nan) if "_labelled" in rows else 1.0
    return rows.drop(columns="n")


# -- known answers ------------------------------------------------------------------------------------------------

def test_the_issues_groups_of_3_4_100_100_no_longer_give_their_sum_away():
    sizes = {"a": 3, "b": 4, "c": 100, "d": 100}
    assert old_suppression(sizes, 10) == {"a", "b"}
    old = audit([3, 4, 100, 100], [{0, 1, 2, 3}, {2}, {3}], [{0}, {1}], 10)
    assert [(d.value, d.how) for d in old.disclosures][0] == (7, "exact"), "the old rule shows the total: 3 + 4 = 7"
    hide = suppression(sizes, 10)
    assert set(hide.hidden) == {"a", "b", "c"}, "a 100 is hidden too, so the hidden sum (107) is at least k"
    assert "complementary" in hide.hidden["c"] and hide.hidden["a"] == "fewer than 10 cases"
    new = audit([3, 4, 100, 100], [{0, 1, 2, 3}, {3}], [{0}, {1}, {2}], 10)
    assert new.safe, new.disclosures
    assert set(suppression({"a": 3, "b": 100, "c": 100}, 10).hidden) == {"a", "b"}
    assert set(suppression({"a": 3, "b": 4}, 10).hidden) == {"a", "b", "overall"}, "a total under k is hidden too"
    assert suppression({"a": 70, "b": 67}, 66).hidden == {}


def test_an_intersection_is_checked_against_its_margins():
    """Site A = 73 and A · M = 42 shown: A · F = 31 follows (k = 35)."""
    atoms = pd.DataFrame({"site": ["A", "A", "B", "B"], "sex": ["M", "F", "M", "F"], "n": [42, 31, 50, 60],
                          "_labelled": True})
    frame = cases_from(atoms)
    pops = populations_of(atoms)
    K_OLD[0] = 35
    published, hidden = publication(atoms, ["site", "sex"], pops, old_hidden_of)
    found = search(atoms["n"].to_numpy(float), published, hidden, 35)
    assert any(int(v @ atoms["n"]) == 31 for v in found["exact"]), "the search finds A · F = 31 in the old rule"
    decision = board_suppression(frame, ["site", "sex"], 35)
    published, hidden = publication(atoms, ["site", "sex"], pops, new_hidden_of(decision))
    found = search(atoms["n"].to_numpy(float), published, hidden, 35)
    assert found["disclosures"] == 0, found
    cross = decision.view(["site", "sex"])
    assert "A · F" in cross.hidden and cross.hidden["A · F"] == "fewer than 35 cases"
    margin = decision.view("site")
    assert "overall" not in margin.hidden, "the total is still shown"
    assert "A" in margin.hidden or "A · M" in cross.hidden, "either the margin or the other cell is withdrawn"


def generated_tables(n_tables: int, seed: int = 0):
    """Random small tables: 1 to 3 attributes with 2 to 3 levels, counts mixing small and large cells, some
    structural zeros, some unlabelled cases; k in {5, 10, 20}."""
    rng = np.random.default_rng(seed)
    for t in range(n_tables):
        n_attr = int(rng.integers(1, 4))
        levels = [int(rng.integers(2, 4)) for _ in range(n_attr)]
        names = [f"a{i}" for i in range(n_attr)]
        grid = list(itertools.product(*[[f"{chr(65 + i)}{v}" for v in range(m)] for i, m in enumerate(levels)]))
        counts = np.where(rng.random(len(grid)) < 0.4, rng.integers(1, 9, len(grid)), rng.integers(9, 60, len(grid)))
        counts[rng.random(len(grid)) < 0.1] = 0  # a combination nobody has
        atoms = pd.DataFrame(grid, columns=names)
        atoms["n"] = counts
        atoms = atoms[atoms["n"] > 0]
        if atoms.empty:
            continue
        unlabelled = atoms.sample(frac=0.3, random_state=t) if t % 3 == 0 else atoms.iloc[:0]
        labelled = atoms.assign(_labelled=True)
        extra = unlabelled.assign(n=np.minimum(unlabelled["n"], 3), _labelled=False)
        yield names, pd.concat([labelled, extra], ignore_index=True), int(rng.choice([5, 10, 20]))


def test_the_search_finds_what_the_old_rule_gives_away_and_nothing_in_the_new():
    tables = old_found = new_found = combinations = 0
    for names, atoms, k in generated_tables(30, seed=1):
        counts = atoms["n"].to_numpy(float)
        pops = populations_of(atoms)
        K_OLD[0] = k
        published, hidden = publication(atoms, names, pops, old_hidden_of)
        old = search(counts, published, hidden, k)
        decision = board_suppression(cases_from(atoms), names, k)
        assert decision.audit.searches >= 1
        published, hidden = publication(atoms, names, pops, new_hidden_of(decision))
        new = search(counts, published, hidden, k)
        assert new["disclosures"] == 0, (names, atoms.to_dict("records"), k, new)
        assert decision.audit.safe
        tables += 1
        old_found += old["disclosures"] > 0
        new_found += new["disclosures"] > 0
        combinations += old["combinations"] + new["combinations"]
    assert tables >= 25 and combinations > 100_000
    assert old_found >= 10, f"the search must find the old rule's leaks: {old_found} of {tables} tables"
    assert new_found == 0


@pytest.mark.parametrize("dense", [True, False])
def test_the_integer_program_finds_every_small_sum_the_brute_force_finds(dense, monkeypatch):
    """The product's one search (a mixed-integer program over every derivable combination, in its dense form over
    the kernel and its sparse form x = Rᵀλ) against the brute force over all unions of atoms, on the old rule's
    publications (where there is something to find)."""
    import evaluation.disclosure

    monkeypatch.setattr(evaluation.disclosure, "DENSE_ATOMS", 10_000 if dense else 0)
    agree = 0
    for names, atoms, k in generated_tables(25, seed=2):
        counts = atoms["n"].to_numpy(float)
        K_OLD[0] = k
        published, hidden = publication(atoms, names, populations_of(atoms), old_hidden_of)
        brute = search(counts, published, hidden, k)
        R = np.unique(np.array(published, float), axis=0)
        found = smallest_derivable_sum(R, counts, k) is not None
        assert found == bool(brute["exact"]), (names, atoms.to_dict("records"), k)
        agree += found
    assert agree >= 5


# -- the demo's board views and report ----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [None, 20, 68])
def test_no_small_count_is_derivable_from_the_demos_board_views(demo_cohort, k):
    from workspace.settings import operator_settings

    k = k or operator_settings().board_k
    frame = with_bands(demo_cohort.frame())
    attributes = group_columns(demo_cohort)
    atoms = atoms_frame(frame, attributes)
    decision = board_decision(demo_cohort, k)
    assert decision.audit.safe and list(decision.atoms["n"]) == list(atoms["n"])
    pops = populations_of(atoms, "split")

    published, hidden = publication(atoms, attributes, pops, new_hidden_of(decision, "split"))
    found = search(atoms["n"].to_numpy(float), published, hidden, k, max_subset=2)
    assert found["disclosures"] == 0, found["exact"][:3]
    assert smallest_derivable_sum(np.unique(np.array(published, float), axis=0), atoms["n"].to_numpy(float), k) \
        is None
    if k == 68:  # the old rule on the same tables gives groups away
        K_OLD[0] = k
        published, hidden = publication(atoms, attributes, pops, old_hidden_of)
        old = search(atoms["n"].to_numpy(float), published, hidden, k, max_subset=2)
        assert old["disclosures"] > 0
    shown = decision.view("site")
    assert "overall" not in shown.hidden, "the cohort's total is still shown"


def test_a_larger_k_keeps_what_the_operators_k_withheld(demo_cohort):
    low, high = board_decision(demo_cohort, 20), board_decision(demo_cohort, 68, floor=20)
    for by in (["site"], ["age_band", "marker_band"], ["site", "age_band"]):
        assert set(low.view(by).hidden) <= set(high.view(by).hidden)


# -- rejected rows: counts by reason, never a value ----------------------------------------------------------------

def test_a_board_reads_rejections_as_counts_by_reason_only():
    rejections = [Rejection(1, "DOE^JANE-0042", "case_id", "duplicate case_id 'DOE^JANE-0042' (first at row 3)"),
                  Rejection(2, "mrn7781234", "image", "file not found: scans/Jane_Doe_1961.png"),
                  Rejection(3, "c3", "image", "file not found: scans/Smith_John.png"),
                  Rejection(4, "c4", "label", "label 'pneumonia' is not one of the model's classes ['a', 'b']"),
                  Rejection(5, "c5", "image", "/srv/archive/Jane Doe/x.dcm points outside the data root(s) /data"),
                  Rejection(6, "c6", "Jane Doe", "something nobody foresaw: 'Jane Doe'")]
    table = rejections_by_reason(rejections)
    assert list(table.columns) == ["rows", "field", "reason"]
    assert table.set_index("reason")["rows"].to_dict() == {
        "file not found": 2, "duplicate case id": 1, "label is not one of the model's classes": 1,
        "file outside the data roots": 1, "other problem": 1}
    text = table.to_csv()
    for value in ("DOE", "Jane", "Smith", "7781234", "pneumonia", "srv", "c3", "x.dcm"):
        assert value not in text, value


def test_the_report_shows_no_count_the_board_views_do_not_already_imply(demo_root, demo_cohort):
    """Every count the board report states (the cohort's make-up per attribute, the performance table of an
    intersection among the test cases) is a combination of what the audited publication shows (rank test), and
    every count it hides is not; so the report and the pages together give nothing away."""
    from workspace.access import Identity
    from workspace.report import gather
    from workspace.store import Workspace

    ws = Workspace(demo_root)
    handle = ws.load_model(ws.model_paths()["v1"])
    cohort = ws.cohort_for(handle, ws.resolve_cohort("demo2d"))
    k = 20
    data = gather(ws, handle, cohort, by=["site", "age_band"], k=k, author=Identity("chair", "board"),
                  trust_methods=(), figures=False)
    decision = board_decision(cohort, k)
    atoms = decision.atoms
    R = decision.published
    rank = np.linalg.matrix_rank(R)

    def follows(mask):
        return np.linalg.matrix_rank(np.vstack([R, mask.astype(float)])) == rank

    checked = hidden = 0
    for table in data.evidence["cohort"]["groups"]:
        for row in table["rows"]:
            mask = (atoms[table["attribute"]] == row["group"]).to_numpy()
            assert follows(mask) == (row["n"] != f"<{k}"), row
            checked += 1
    test = atoms["_labelled"].to_numpy(bool) & (atoms["split"] == "test").to_numpy()
    for row in data.evidence["performance"]["table"]:
        if row["group"] == "overall":
            mask = test
        else:
            site, band = row["group"].split(" · ")
            mask = test & (atoms["site"] == site).to_numpy() & (atoms["age_band"] == band).to_numpy()
        assert follows(mask) == (str(row["n"]) != f"<{k}"), row
        assert str(row["n"]) == f"<{k}" or int(row["n"]) == int(atoms.loc[mask, "n"].sum())
        checked += 1
        hidden += str(row["n"]) == f"<{k}"
    assert checked >= 15 and hidden >= 1, "the intersection among the test cases hides groups"
    assert all(set(r) == {"rows", "field", "reason"} for r in data.evidence["cohort"]["rejected"])

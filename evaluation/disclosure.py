"""The disclosure audit: can a small count be worked out from what a role's views publish together?

Every count a board view shows (a population's total, a group's size in any table, an intersection's cell) is the
number of cases in a set of *atoms*, the cells of the finest cross-classification of the attributes. Published
counts are linear equations ``R y = b`` over the atom counts ``y ≥ 0`` (``R``: one 0/1 row per distinct published
atom set). A reader holding every view can derive exactly the quantities whose indicator (or integer combination of
indicators) lies in the row space of ``R``, and can bound any other by linear programming over ``y ≥ 0``.

The audit asks two questions (Cox 1980; Willenborg & de Waal, *Elements of Statistical Disclosure Control*, 2001,
ch. 4-6, audits of complementary suppression by linear programming):

1. **exact**: is any non-negative integer combination ``x`` of atoms with ``1 ≤ c·x ≤ k−1`` (``c``: atom counts) in
   the row space of ``R``? Any hidden cell, and any sum of hidden cells, under ``k`` is such an ``x``; and so is
   every other small count (a union of atoms under ``k`` contains only atoms under ``k``). One mixed-integer
   program (:func:`smallest_derivable_sum`, HiGHS through :func:`scipy.optimize.milp`) searches all of them at
   once; each witness is confirmed by a rank test (:func:`derivable`).
2. **bounded**: for each hidden cell, its feasible range ``[min, max]`` of ``1_S·y`` subject to ``R y = b, y ≥ 0``
   (:func:`feasible_range`, :func:`scipy.optimize.linprog`): disclosed when ``max − min`` is 0 or ``max < k``
   (the arithmetic alone pins it below ``k``).

Zero counts are not disclosures (an absent row already says "none").
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

__all__ = ["Disclosure", "Audit", "derivable", "derivation", "feasible_range", "smallest_derivable_sum", "audit",
           "kernel", "row_basis", "residual"]

#: below this a singular value (or a residual) is zero: the matrices are 0/1 with at most a few thousand rows
TOL = 1e-8
#: up to this many atoms the integer program is written over the kernel of the published rows (dense); above, as
#: x = Rᵀλ (sparse)
DENSE_ATOMS = 256


@dataclasses.dataclass(frozen=True)
class Disclosure:
    """One small count a reader can work out: ``atoms`` (index → multiplicity), its true ``value``, the range
    ``[low, high]`` the published counts allow, and ``how`` (``"exact"`` or ``"bounded below k"``)."""

    atoms: tuple[tuple[int, int], ...]
    value: int
    low: float
    high: float
    how: str


@dataclasses.dataclass(frozen=True)
class Audit:
    """What was checked and what was found: ``published`` (distinct published atom sets), ``hidden`` (distinct
    hidden cells whose range was computed), ``ranges`` (linear programs solved), ``searches`` (integer programs
    solved), ``disclosures``."""

    k: int
    atoms: int
    published: int
    hidden: int
    ranges: int
    searches: int
    disclosures: tuple[Disclosure, ...]

    @property
    def safe(self) -> bool:
        return not self.disclosures


def _matrix(rows: Sequence[Iterable[int]] | np.ndarray, n_atoms: int) -> np.ndarray:
    if isinstance(rows, np.ndarray):
        return rows.astype(float).reshape(-1, n_atoms)
    out = np.zeros((len(rows), n_atoms))
    for i, members in enumerate(rows):
        out[i, list(members)] = 1.0
    return out


def kernel(R: np.ndarray) -> np.ndarray:
    """An orthonormal basis (columns) of the vectors orthogonal to every row of ``R``: ``x`` is derivable from the
    rows exactly when ``kernel(R).T @ x == 0``."""
    n = R.shape[1]
    if not len(R):
        return np.eye(n)
    _, s, vt = np.linalg.svd(R, full_matrices=True)
    rank = int((s > TOL * max(1.0, s[0])).sum())
    return vt[rank:].T


def row_basis(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, rows)``: an orthonormal basis of the row space of ``R`` (columns of ``Q``, atoms × rank) and the indices
    of rows of ``R`` that span it (QR with column pivoting of ``Rᵀ``). ``x`` is derivable when ``x − Q Qᵀ x = 0``."""
    from scipy.linalg import qr

    n = R.shape[1]
    if not len(R):
        return np.zeros((n, 0)), np.zeros(0, int)
    q, r, pivot = qr(R.T, mode="economic", pivoting=True)
    d = np.abs(np.diag(r))
    rank = int((d > TOL * max(1.0, d[0] if len(d) else 1.0) * max(R.shape)).sum())
    return q[:, :rank], np.sort(pivot[:rank])


def residual(Q: np.ndarray, x: np.ndarray) -> float:
    """How far ``x`` lies from the row space whose basis is ``Q`` (0 when it is derivable)."""
    x = np.asarray(x, float)
    return float(np.abs(x - Q @ (Q.T @ x)).max(initial=0.0))


def derivable(R: np.ndarray, x: np.ndarray) -> bool:
    """Whether ``x`` (a vector over atoms) is a linear combination of the rows of ``R``: rank of ``[R; x]`` equals
    the rank of ``R`` (:func:`numpy.linalg.matrix_rank`)."""
    x = np.asarray(x, float).reshape(1, -1)
    if not len(R):
        return not x.any()
    return np.linalg.matrix_rank(np.vstack([R, x]), tol=1e-7) == np.linalg.matrix_rank(R, tol=1e-7)


def feasible_range(R: np.ndarray, b: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """The smallest and largest ``x·y`` over atom counts ``y ≥ 0`` with ``R y = b`` (two linear programs)."""
    from scipy import sparse

    x = np.asarray(x, float)
    bounds = [(0, None)] * len(x)
    A, rhs = (sparse.csr_matrix(R), b) if len(R) else (None, None)
    lo = linprog(x, A_eq=A, b_eq=rhs, bounds=bounds, method="highs")
    hi = linprog(-x, A_eq=A, b_eq=rhs, bounds=bounds, method="highs")
    low = float(lo.fun) if lo.status == 0 else 0.0
    high = float(-hi.fun) if hi.status == 0 else np.inf  # unbounded: nothing caps it
    return low, high


def derivation(R: np.ndarray, x: np.ndarray) -> list[int]:
    """The rows of ``R`` that one sparsest derivation of ``x`` uses: ``x = Rᵀλ`` with the least ``Σ|λ|`` (a linear
    program); empty when ``x`` is not derivable."""
    m = len(R)
    if not m:
        return []
    A = np.hstack([R.T, -R.T])
    result = linprog(np.ones(2 * m), A_eq=A, b_eq=np.asarray(x, float), bounds=[(0, None)] * (2 * m), method="highs")
    if result.status != 0:
        return []
    lam = result.x[:m] - result.x[m:]
    return [int(i) for i in np.flatnonzero(np.abs(lam) > 1e-9)]


def smallest_derivable_sum(R: np.ndarray, counts: np.ndarray, k: int, *,
                           K: np.ndarray | None = None) -> np.ndarray | None:
    """A non-negative integer combination ``x`` of atoms, derivable from ``R``, with ``1 ≤ counts·x ≤ k−1``; None
    when there is none (the integer program is infeasible). Written as ``x = Rᵀλ`` (``x`` integer, ``λ`` free), which
    keeps the program as sparse as the tables are (for many atoms); the witness is confirmed by :func:`derivable`. ``K`` is accepted
    (the kernel of ``R``) is used for up to ``DENSE_ATOMS`` atoms, where the dense form is the faster."""
    from scipy import sparse

    counts = np.asarray(counts, float)
    n = len(counts)
    if k <= 1 or not n or not len(R):
        return None
    m = len(R)
    upper = np.where(counts > 0, np.floor((k - 1) / np.maximum(counts, 1)), 0)
    if n <= DENSE_ATOMS:  # few atoms: x ⟂ the kernel of R, dense and small
        K = kernel(R) if K is None else K
        constraints = [LinearConstraint(counts.reshape(1, -1), 1, k - 1)]
        if K.shape[1]:
            constraints.append(LinearConstraint(K.T, -1e-9, 1e-9))
        result = milp(np.zeros(n), constraints=constraints, integrality=np.ones(n), bounds=Bounds(0, upper),
                      options={"presolve": True})
        x = None if result.status != 0 or result.x is None else np.round(result.x).astype(int)
        if x is None or not (1 <= counts @ x <= k - 1) or not derivable(R, x):
            return None
        return x
    A = sparse.hstack([sparse.identity(n, format="csr"), -sparse.csr_matrix(R.T)], format="csr")
    value = sparse.hstack([sparse.csr_matrix(counts.reshape(1, -1)), sparse.csr_matrix((1, m))], format="csr")
    constraints = [LinearConstraint(A, 0, 0), LinearConstraint(value, 1, k - 1)]
    lower = np.concatenate([np.zeros(n), np.full(m, -np.inf)])
    bounds = Bounds(lower, np.concatenate([upper, np.full(m, np.inf)]))
    integrality = np.concatenate([np.ones(n), np.zeros(m)])
    result = milp(np.zeros(n + m), constraints=constraints, integrality=integrality, bounds=bounds,
                  options={"presolve": True})
    if result.status != 0 or result.x is None:
        return None
    x = np.round(result.x[:n]).astype(int)
    if not (1 <= counts @ x <= k - 1) or not derivable(R, x):  # a numerical artefact of the tolerance: not a witness
        return None
    return x


def audit(counts: Sequence[int], published: Sequence[Iterable[int]], hidden: Sequence[Iterable[int]], k: int, *,
          ranges: bool = True, exact_only: Sequence[Iterable[int]] = ()) -> Audit:
    """Audits a publication: ``counts`` per atom, ``published`` atom sets (each shown with its count), ``hidden``
    atom sets (cells a view shows as ``<k``). Reports the exact witness of the integer program (if any) and every
    hidden cell whose range the published counts pin to one value or below ``k``; ``exact_only``: further hidden
    cells (of finer tables) reported only when pinned to one value (each shows as ``<k`` already, so a bound below
    ``k`` tells a reader nothing its label does not)."""
    counts = np.asarray(counts, float)
    n = len(counts)
    R = np.unique(_matrix(list(published), n), axis=0) if len(published) else np.zeros((0, n))
    b = R @ counts
    _, spanning = row_basis(R)
    R_basis, b_basis = R[spanning], b[spanning]  # the same equations, without the redundant ones
    found: list[Disclosure] = []
    searches, solved = 1, 0
    x = smallest_derivable_sum(R, counts, k)
    if x is not None:
        v = int(counts @ x)
        found.append(Disclosure(atoms=tuple((int(i), int(m)) for i, m in enumerate(x) if m), value=v, low=v,
                                high=v, how="exact"))
    H = np.unique(_matrix(list(hidden), n), axis=0) if len(hidden) else np.zeros((0, n))
    F = np.unique(_matrix(list(exact_only), n), axis=0) if len(exact_only) else np.zeros((0, n))
    Q, _ = row_basis(R)
    for f in F:  # a finer table's hidden cell: disclosed only when it follows exactly (counts are all positive, so
        value = float(counts @ f)  # a cell that does not follow is never pinned by non-negativity)
        if 1 <= value <= k - 1 and residual(Q, f) < 1e-6:
            found.append(Disclosure(atoms=tuple((int(i), 1) for i in np.flatnonzero(f)), value=int(value), low=value,
                                    high=value, how="exact"))
    if ranges:
        for h, bounded in [(h, True) for h in H]:
            value = float(counts @ h)
            if not 1 <= value <= k - 1:  # zero says nothing an absent row does not; k or more may be known
                continue
            low, high = feasible_range(R_basis, b_basis, h)
            solved += 2
            if high - low < 0.5 or (bounded and high < k):
                found.append(Disclosure(atoms=tuple((int(i), 1) for i in np.flatnonzero(h)), value=int(value),
                                        low=low, high=high, how="exact" if high - low < 0.5 else "bounded below k"))
    return Audit(k=int(k), atoms=n, published=len(R), hidden=len(H) + len(F), ranges=solved, searches=searches,
                 disclosures=tuple(found))

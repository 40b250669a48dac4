"""The calibration suite: for every claim Glassbox prints (an interval, a gap flag, "significant", a non-inferiority
verdict, a drift alert, a reader-agreement interval), a seeded simulation under the null (false alarms) or under a
known effect (coverage, power), run against the product's own functions with the design the product uses.

Each area is one module here exposing ``claims(sims: int, seed: int = 0) -> list[Claim]``. ``tests/`` run them
with few simulations (quick, bands from the Monte Carlo error at that count); ``benchmarks/calibration_suite.py``
runs them all with many and prints the table the README quotes.

Acceptance bands come from the Monte Carlo error of the number of simulations: a false-alarm rate passes when it is
at most nominal + 3 standard errors, a coverage when at least nominal − 3 standard errors, a power when at least
its stated minimum − 3 standard errors (standard error ``sqrt(nominal (1 − nominal) / sims)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Claim", "AREAS", "table"]

#: the modules of this package, each one area of claims
AREAS = ("subgroups", "concepts", "monitoring", "agreement", "operating_point", "trust",
         "identifiers", "integrity", "comparison", "multiclass", "uncertainty", "referral", "ece")

KINDS = ("false alarm", "coverage", "power")


@dataclass(frozen=True)
class Claim:
    """One claim's simulation: ``hits`` of ``simulations`` alarmed (false alarm), covered (coverage) or detected
    (power); ``nominal`` the stated rate (0.05 false alarms, 0.95 coverage, the minimum power promised)."""

    claim: str
    kind: str
    nominal: float
    hits: int
    simulations: int
    design: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")
        if self.simulations < 1 or not 0 <= self.hits <= self.simulations:
            raise ValueError(f"{self.claim}: {self.hits} hits of {self.simulations} simulations")

    @property
    def measured(self) -> float:
        return self.hits / self.simulations

    @property
    def standard_error(self) -> float:
        """Monte Carlo standard error of the measured rate, at the nominal rate."""
        return math.sqrt(self.nominal * (1 - self.nominal) / self.simulations)

    @property
    def bound(self) -> float:
        """The acceptance bound: nominal + 3 SE for false alarms, nominal − 3 SE otherwise."""
        return self.nominal + 3 * self.standard_error if self.kind == "false alarm" \
            else self.nominal - 3 * self.standard_error

    @property
    def passed(self) -> bool:
        return self.measured <= self.bound if self.kind == "false alarm" else self.measured >= self.bound

    def line(self) -> str:
        op = "≤" if self.kind == "false alarm" else "≥"
        return (f"| {self.claim} | {self.kind} | {self.nominal:.2f} | {self.measured:.3f} ({op} {self.bound:.3f}) | "
                f"{self.simulations} | {self.design} | {'yes' if self.passed else 'NO'} |")


def table(claims: list[Claim]) -> str:
    """The Markdown table the README quotes."""
    head = ("| claim | kind | nominal | measured (band) | simulations | design | holds |\n"
            "|---|---|---|---|---|---|---|")
    return "\n".join([head, *(c.line() for c in claims)])

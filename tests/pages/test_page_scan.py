"""Pages and commands stay thin: a scan for computation and judgement that belongs below them.

DESIGN: "Pages hold no computation worth testing on its own"; "Verdict ... Made in ``evaluation/``, never in a page
or a command". This test walks the AST of ``pages/*.py``, ``app.py`` and ``workspace/cli.py`` and reports every node
that matches one of ``RULES`` (each rule is data: what it matches, why it does not belong there, and where it
belongs).

Today's offenders are each listed in ``ALLOWED`` (file, rule, a piece of the offending source, the reason, and who is
moving it). The test fails on an offender that is not listed, and on a listed one that is gone (a stale entry), so
the list can only shrink. Delete the entry in the same change that moves the code.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


from tests.helpers import ROOT  # noqa: E402 - the repository root, one definition

# -- what the rules look for (data) ------------------------------------------------------------------------------------
#: modules whose calls are numeric work (an import alias is followed: ``from scipy.stats import norm`` → ``norm.ppf``)
NUMERIC_MODULES = ("numpy", "scipy", "sklearn", "torch", "statsmodels", "fairlearn")
#: numeric calls that only guard or serialise what is shown
TRIVIAL_NUMERIC = frozenset({"isfinite", "isnan", "isinf", "save"})
#: DataFrame/Series/array methods that summarise results
SUMMARIES = frozenset({"quantile", "nlargest", "nsmallest", "mean", "median", "std", "var"})
#: aggregations that, on a ``.groupby(...)``, compute per-group statistics
GROUP_AGGREGATIONS = frozenset({"agg", "aggregate", "mean", "median", "sum", "std", "var", "quantile", "apply",
                                "transform", "size", "count", "min", "max"})
#: names that hold a decision cut: compared against, they decide pass / fail / shown / alert
CUT_NAMES = re.compile(r"(?i)((^|_)(alpha|level|margin|cutoff|threshold)s?$|^min_|^max_gap|^max_regression)")
#: callee names that fit something (calibration, thresholds, estimators)
FIT_NAMES = re.compile(r"(?i)(^fit$|^fit_|temperature)")
#: receivers whose .apply(...) applies a fitted calibration
FITTED = re.compile(r"(?i)(scaler|calibrat)")
#: callee names that build intervals; and the normal quantile written out
INTERVAL_NAMES = re.compile(r"(?i)(interval|wilson|bootstrap|^bca|percentile|^ppf$)")
Z_CONSTANTS = (1.96, 1.959964, 1.959963984540054)
#: packages a page has no business importing (models, gradients, statistics)
COMPUTE_PACKAGES = ("torch", "torchvision", "captum", "monai", "sklearn", "scipy", "fairlearn", "statsmodels",
                    "transformers", "safetensors")
#: attribute names of TorchScript's classes
TORCHSCRIPT = frozenset({"ScriptModule", "RecursiveScriptModule", "ScriptFunction", "jit"})

PAGES = "pages/*.py"
THIN = (PAGES, "app.py", "workspace/cli.py")


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str  # what it matches, in words
    why: str
    belongs: str
    where: tuple[str, ...] = THIN  # globs of the files it applies to


RULES = (
    Rule("numeric-call", "a call into numpy / scipy / scikit-learn / torch / statsmodels / fairlearn, other than "
                         f"{', '.join(sorted(TRIVIAL_NUMERIC))}",
         "numeric work on a page or in a command is untested on its own and repeated where the next caller needs it",
         "the library function that owns the figure (evaluation/ for cohort statistics, explainers/ per case)"),
    Rule("summary-statistic", f"a .{'/.'.join(sorted(SUMMARIES))}() call, or an aggregation on a .groupby(...)",
         "a summary of results is a statistic: it needs its design, its interval and a test",
         "evaluation/ (cohort_summary, referral, subgroups), returned as a typed table"),
    Rule("threshold-comparison", "an ordering comparison against a probability-like literal (0 < c < 1) or a cut "
                                 "named alpha / level / margin / cutoff / threshold / min_* / max_gap",
         "comparing to a cut decides pass / fail / shown / alert: a verdict, with an error rate to state",
         "evaluation/ as a Verdict record (evaluation.inference.Verdict), which the page or command only shows"),
    Rule("fraction-of-cases", "round() / int() / math.ceil / math.floor of a fraction times len(...)",
         "how many cases a fraction means (rounding, ties) is the referral policy; written twice it disagrees",
         "evaluation/referral.py (one function that returns the referred cases)"),
    Rule("default-choice", "a widget's index= chosen by a condition (x if cond else y), other than reopening on "
                           "what is there (x in options, last is not None) or finding a value chosen elsewhere "
                           "(options.index(chosen) if chosen else 0)",
         "a default (uncertainty method, class view) is a policy: chosen in one place it is the same on every page",
         "a policy function in the library (e.g. explainers.uncertainty.default_method), called by every page"),
    Rule("torchscript-check", "isinstance(..., torch.jit.ScriptModule) or any torch.jit use",
         "'can this model be hooked?' is a property of the model, asked in one place",
         "data_adapters.records.ModelHandle.hookable"),
    Rule("fitting", "a call to fit / fit_* / *temperature* (not a function of the file), or <scaler>.apply(...); "
                    "the library's one door (evaluation.calibration.recalibrate) is what a page calls instead",
         "fitting (calibration, thresholds) is done once, on a named split, with provenance; a page refits per view",
         "evaluation/ (calibration, operating_point), fitted once in a workspace service and read by pages"),
    Rule("interval-code", "a call to *interval* / wilson / *bootstrap* / bca* / *percentile* / ppf (not a function "
                          "of the file), or 1.96 written out",
         "DESIGN: one home for intervals; a page that builds one chooses its design and level itself",
         "evaluation/inference.py, called by the evaluation function whose table the page shows"),
    Rule("compute-import", f"an import of {', '.join(COMPUTE_PACKAGES)}",
         "a page that imports a model or statistics package is about to compute",
         "explainers/ or evaluation/ (the page imports the library function instead)", (PAGES, "app.py")),
)
RULE_NAMES = {r.name for r in RULES}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str
    source: str  # the offending source, on one line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.source[:100]}"


# -- the matchers -------------------------------------------------------------------------------------------------
def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name → the module or object it was imported as (``np`` → ``numpy``, ``norm`` → ``scipy.stats.norm``)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _chain(node: ast.expr) -> list[str]:
    """``a.b.c`` → ``["a", "b", "c"]``; ``[]`` when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return []


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _is_numeric_root(chain: list[str], aliases: dict[str, str]) -> bool:
    return bool(chain) and aliases.get(chain[0], "").split(".")[0] in NUMERIC_MODULES


def _receiver_has_groupby(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "groupby":
                return True
            node = node.func
        else:
            node = node.value
    return False


def _float_cut(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is float and 0.0 < node.value < 1.0


def _named_cut(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return bool(name) and bool(CUT_NAMES.search(name))


def _unit_bound(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value in (0, 1) and not isinstance(node.value, bool)


def _contains(node: ast.AST, pred: Callable[[ast.AST], bool]) -> bool:
    return any(pred(n) for n in ast.walk(node))


def _is_len(n: ast.AST) -> bool:
    return isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "len"


def _restores(test: ast.expr) -> bool:
    """``x in options`` / ``last is not None``: the widget reopens on what is there, not on a policy's choice."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return all(_restores(v) for v in test.values)
    return isinstance(test, ast.Compare) and all(isinstance(o, ast.In | ast.NotIn | ast.Is | ast.IsNot)
                                                 for o in test.ops)


def _looks_up(body: ast.expr) -> bool:
    """``options.index(chosen) if chosen else 0``: the value was chosen elsewhere (a library policy, the last
    state); the page only finds where it sits among the options."""
    return _contains(body, lambda n: isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                     and n.func.attr == "index")


@dataclass(frozen=True)
class _Context:
    aliases: dict[str, str]
    local_functions: frozenset[str]


def _match(rule: str, node: ast.AST, ctx: _Context) -> bool:
    if rule == "numeric-call":
        return (isinstance(node, ast.Call) and _is_numeric_root(_chain(node.func), ctx.aliases)
                and _callee(node) not in TRIVIAL_NUMERIC)
    if rule == "summary-statistic":
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            return False
        if _is_numeric_root(_chain(node.func), ctx.aliases):
            return False  # np.mean(...) is a numeric-call
        grouped = _receiver_has_groupby(node.func.value)
        return node.func.attr in SUMMARIES or (grouped and node.func.attr in GROUP_AGGREGATIONS)
    if rule == "threshold-comparison":
        if not (isinstance(node, ast.Compare) and any(isinstance(o, ast.Lt | ast.LtE | ast.Gt | ast.GtE)
                                                      for o in node.ops)):
            return False
        operands = [node.left, *node.comparators]
        if any(_float_cut(o) for o in operands):
            return True
        # a cut compared with something other than 0 / 1 (0 <= threshold <= 1 validates an argument)
        return any(_named_cut(o) for o in operands) and not all(_unit_bound(o) or _named_cut(o) for o in operands)
    if rule == "fraction-of-cases":
        if not isinstance(node, ast.Call):
            return False
        name = ".".join(_chain(node.func))
        if name not in ("round", "int", "math.ceil", "math.floor"):
            return False
        return any(_contains(a, lambda n: isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult)
                             and (_contains(n.left, _is_len) or _contains(n.right, _is_len))) for a in node.args)
    if rule == "default-choice":
        return isinstance(node, ast.Call) and any(k.arg == "index" and isinstance(k.value, ast.IfExp)
                                                  and not _restores(k.value.test) and not _looks_up(k.value.body)
                                                  for k in node.keywords)
    if rule == "torchscript-check":
        if isinstance(node, ast.Attribute) and node.attr in TORCHSCRIPT:
            chain = _chain(node)
            return bool(chain) and ctx.aliases.get(chain[0], "").split(".")[0] == "torch"
        return False
    if rule == "fitting":
        if not isinstance(node, ast.Call):
            return False
        if isinstance(node.func, ast.Attribute) and node.func.attr == "apply":
            chain = _chain(node.func.value)
            return bool(chain) and bool(FITTED.search(chain[-1]))
        return bool(FIT_NAMES.search(_callee(node))) and _callee(node) not in ctx.local_functions
    if rule == "interval-code":
        if isinstance(node, ast.Constant) and type(node.value) is float:
            return any(abs(node.value - z) < 1e-9 for z in Z_CONSTANTS)
        return (isinstance(node, ast.Call) and bool(INTERVAL_NAMES.search(_callee(node)))
                and _callee(node) not in ctx.local_functions)
    if rule == "compute-import":
        if isinstance(node, ast.Import):
            return any(a.name.split(".")[0] in COMPUTE_PACKAGES for a in node.names)
        return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in COMPUTE_PACKAGES
    raise KeyError(rule)


def _outermost(nodes: list[ast.AST]) -> Iterator[ast.AST]:
    """Drop a torch.jit attribute inside a longer torch.jit chain (report ``torch.jit.ScriptModule`` once)."""
    inner = {id(n.value) for n in nodes if isinstance(n, ast.Attribute)}
    return (n for n in nodes if id(n) not in inner)


def scan(source: str, file: str) -> list[Finding]:
    """Every node of ``source`` (the text of ``file``, relative to the root) that a rule for that file matches."""
    tree = ast.parse(source, file)
    ctx = _Context(_aliases(tree), frozenset(n.name for n in ast.walk(tree)
                                             if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)))
    nodes = list(ast.walk(tree))
    found = []
    for rule in RULES:
        if not any(Path(file).match(glob) for glob in rule.where):
            continue
        hits = [n for n in nodes if _match(rule.name, n, ctx)]
        for n in _outermost(hits):
            text = " ".join((ast.get_source_segment(source, n) or "").split())
            found.append(Finding(file, n.lineno, rule.name, text))
    return sorted(found, key=lambda f: (f.file, f.line, f.rule))


def scanned_files() -> list[Path]:
    return sorted({*ROOT.glob(PAGES), ROOT / "app.py", ROOT / "workspace" / "cli.py"})


def scan_tree() -> list[Finding]:
    out = []
    for p in scanned_files():
        out += scan(p.read_text(encoding="utf-8"), p.relative_to(ROOT).as_posix())
    return out


# -- today's offenders (the list may only shrink) ----------------------------------------------------------------------
@dataclass(frozen=True)
class Allowed:
    file: str
    rule: str
    contains: str  # a piece of the offending source (matches every finding of that rule in that file holding it)
    reason: str
    mover: str  # who moves it, and under which issue


ALLOWED: tuple[Allowed, ...] = ()  # empty since 22:50 on 4 Dec: every offender found at the start has moved


def _allowed(f: Finding, a: Allowed) -> bool:
    return f.file == a.file and f.rule == a.rule and a.contains in f.source


def offences(findings: list[Finding], allowed: tuple[Allowed, ...]) -> tuple[list[Finding], list[Allowed]]:
    """(findings no entry allows, entries that allow nothing any more)."""
    new = [f for f in findings if not any(_allowed(f, a) for a in allowed)]
    stale = [a for a in allowed if not any(_allowed(f, a) for f in findings)]
    return new, stale


def test_pages_and_commands_stay_thin():
    new, stale = offences(scan_tree(), ALLOWED)
    why = {r.name: r for r in RULES}
    lines = [f"NEW  {f}\n       why: {why[f.rule].why}; belongs in {why[f.rule].belongs}" for f in new]
    lines += [f"STALE {a.file}: {a.rule}: {a.contains!r} is gone: delete its ALLOWED entry" for a in stale]
    assert not lines, f"{len(new)} new offender(s), {len(stale)} stale allowance(s):\n" + "\n".join(lines)


def test_the_rules_and_the_allowlist_are_well_formed():
    assert len(RULE_NAMES) == len(RULES)
    assert all(r.pattern and r.why and r.belongs and r.where for r in RULES)
    for a in ALLOWED:
        assert a.rule in RULE_NAMES, a
        assert (ROOT / a.file).is_file(), a
        assert a.contains and a.reason and a.mover, a
    assert len({(a.file, a.rule, a.contains) for a in ALLOWED}) == len(ALLOWED), "an ALLOWED entry is listed twice"


# -- the scan catches what it should, and leaves presentation alone -----------------------------------------------------
PLANTED = [
    ("import numpy as np\ncut = np.quantile(u, 0.9)\n", "numeric-call"),
    ("from scipy.stats import norm\nz = norm.ppf(0.975)\n", "numeric-call"),
    ("import torch\np = torch.softmax(logits, 1)\n", "numeric-call"),
    ("referred = frame.nlargest(10, 'entropy')\n", "summary-statistic"),
    ("u = frame['entropy'].quantile(0.9)\n", "summary-statistic"),
    ("rates = frame.groupby('site')['error'].mean()\n", "summary-statistic"),
    ("rates = frame.groupby('site').agg(n=('y', 'size'))\n", "summary-statistic"),
    ("word = 'significant' if p < 0.05 else 'not significant'\n", "threshold-comparison"),
    ("if report.gap > args.max_gap:\n    print('FAIL')\n", "threshold-comparison"),
    ("fired = frame.loc[frame['p_adj'] < level, 'window']\n", "threshold-comparison"),
    ("gate = 'passes' if r.acc >= MIN_CAV_ACCURACY else 'FAILS'\n", "threshold-comparison"),
    ("n = int(round(refer * len(frame)))\n", "fraction-of-cases"),
    ("row = curve.iloc[int(round(len(curve) * (1 - refer))) - 1]\n", "fraction-of-cases"),
    ("m = st.selectbox('Method', methods, index=0 if has_dropout(h) else 1)\n", "default-choice"),
    ("import torch\nhookable = not isinstance(h.module, torch.jit.ScriptModule)\n", "torchscript-check"),
    ("scaler = fit_temperature(logits, labels)\n", "fitting"),
    ("model = LogisticRegression().fit(x, y)\n", "fitting"),
    ("after = result.scaler.apply(probs)\n", "fitting"),
    ("lo, hi = wilson(k, n)\n", "interval-code"),
    ("lo = m - 1.96 * se\n", "interval-code"),
    ("import torch\n", "compute-import"),
    ("from sklearn.metrics import roc_auc_score\n", "compute-import"),
]


@pytest.mark.parametrize("source, rule", PLANTED)
def test_a_planted_offender_is_flagged(source, rule):
    findings = scan(source, "pages/planted.py")
    assert rule in {f.rule for f in findings}, findings


def test_a_planted_offender_fails_the_tree_check():
    findings = scan("import numpy as np\ncut = np.quantile(u, 0.9)\n", "pages/planted.py")
    new, stale = offences(findings, ())
    assert [(f.line, f.rule, f.source) for f in new] == [(2, "numeric-call", "np.quantile(u, 0.9)")]
    # allowed, it passes; once the code moves, the same entry is stale
    entry = Allowed("pages/planted.py", "numeric-call", "np.quantile", "planted", "this test")
    assert offences(findings, (entry,)) == ([], [])
    assert offences(scan("x = 1\n", "pages/planted.py"), (entry,)) == ([], [entry])


PRESENTATION = [
    "import numpy as np\nvalue = 'n/a' if not np.isfinite(v) else f'{v:.3f}'\n",
    "if len(rows) > 1:\n    st.caption('several')\n",
    "if rows and rows[0] < len(ids):\n    pass\n",
    "if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:\n    raise SystemExit(2)\n",
    "choice = st.selectbox('Model version', models, index=len(models) - 1)\n",
    "a = st.radio('I', AGREEMENT, index=AGREEMENT.index(last['a']) if last is not None else None)\n",
    "c = st.selectbox('Candidate', names, index=names.index(current) if current in names else 0)\n",
    "s = st.selectbox('Split', ['all', *splits], index=1 + splits.index(held_out) if held_out else 0)\n",
    "from evaluation.calibration import recalibrate\nresult = recalibrate(probs, labels, task)\n",
    "def fit_cohort():\n    pass\nst.button('x', on_click=fit_cohort)\nfit_cohort()\n",
    "names = frame[by].astype(str).agg(' · '.join, axis=1)\n",
    "for group, rows in worse.groupby('group', sort=False):\n    st.write(group)\n",
    "st.metric('Temperature', f'{result.scaler.temperature:.2f}')\n",
    "def _interval_text(v, lo, hi):\n    return f'{v} [{lo}, {hi}]'\nprint(_interval_text(1, 0, 2))\n",
    "import numpy as np\nnp.save(buffer, array)\n",
]


@pytest.mark.parametrize("source", PRESENTATION)
def test_presentation_is_not_flagged(source):
    assert scan(source, "pages/planted.py") == []


def test_compute_imports_are_a_page_rule_only():
    assert scan("import torch\n", "workspace/cli.py") == []
    assert [f.rule for f in scan("import torch\n", "app.py")] == ["compute-import"]

"""The ethics board's report: provenance, cohort, performance, explanations, version comparison, reviewers and the
lifecycle checklist, each answered with the evidence Glassbox produced; HTML and PDF from one template
(``assets/report.html.j2``, WeasyPrint for PDF, kaleido for static plots).

Small groups are hidden by :mod:`evaluation.suppression` in every table, sentence and figure. A report is named by
the SHA-256 of its evidence (every figure and table it states, the model, cohort and comparison hashes, the board's
answers; not the time it was rendered or who rendered it): a board member signs that hash
(:meth:`workspace.review.Record.sign_off`); a changed model, cohort or answer makes a new report, and the old
signature does not carry over.

A kept file is verifiable on its own (``glassbox verify-report FILE``): every HTML report carries a **seal** (a
``<meta name="glassbox-seal">`` element) holding the report's content hash, the SHA-256 of the document without the
seal, a short hash of every line (so a change is named by its section and line), the sign-offs it states with the
number and hash of the audit entry that recorded each, and a MAC over all of it under a key derived from the
operator's secret. A PDF carries the same in a comment before its final ``startxref`` (every PDF reader skips it):
the SHA-256 of the bytes before it and a hash of every line of text per page (read back with poppler's
``pdftotext`` where it is installed, so that an edited PDF is named by page and line).
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import html as html_lib
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data_adapters.errors import InvalidInputError
from data_adapters.hashing import json_hash, mac, mac_matches
from data_adapters.preprocessing import on_model_grid
from data_adapters.readers import read_image
from data_adapters.records import Cohort, ModelHandle
from data_adapters.tables import CLUSTER, ENTROPY, OUTCOME, SCORE
from evaluation.calibration import ece_text
from evaluation.cohort_summary import board_decision, group_counts, held_out_split, with_bands
from evaluation.explanation_quality import in_words as trust_in_words
from evaluation.explanation_quality import quality_summary
from evaluation.figures import forest_plot, plain_figure
from evaluation.gates import shown_gaps
from evaluation.multiclass import multiclass_report
from evaluation.outcomes import with_outcomes
from evaluation.referral import REFER_FRACTION, clinical_rates, referral_cutoff, referral_outcomes
from evaluation.reader_agreement import model_vs_reader, pairs_in_words
from evaluation.subgroups import labelled_frame, subgroup_report
from evaluation.suppression import rejections_by_reason, suppression
from evaluation.version_comparison import FLIP_KINDS, mcnemar_design
from explainers.figures import case_views, display_image
from explainers.saliency import SALIENCY_METHODS
from workspace.access import Identity
from workspace.settings import operator_settings
from workspace.demo import demo_facts
from workspace.review import Record
from workspace.cache import write_file
from workspace.comparison import compare
from workspace.monitoring import monitor
from workspace.keys import integrity_key
from workspace.store import Workspace
from workspace.trust import explanation_quality
from workspace.uncertainty import uncertainty

__all__ = ["CHECKLIST", "ReportData", "gather", "render_html", "write_report", "is_generated", "model_card",
           "pdf_bytes", "verify_report", "ReportCheck"]

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CHECKLIST = json.loads((ASSETS / "lifecycle_checklist.json").read_text())
PACKAGES = ("glassbox", "torch", "captum", "monai", "fairlearn", "scikit-learn", "pandas", "streamlit", "weasyprint")
Progress = Callable[[str], None]


def is_generated(root: str | Path, cohort_name: str) -> bool:
    """Whether a cohort is the demo's generated data (never to be passed off as patients)."""
    facts = demo_facts(root)
    return bool(facts) and cohort_name in {facts.get("cohort"), facts.get("cohort_3d"),
                                           f"{facts.get('cohort_3d')}_dicom"}


@dataclasses.dataclass(frozen=True)
class ReportData:
    """What a report states (``evidence``, hashed), its figures (PNG, not hashed: renderers differ by a pixel),
    and when and by whom it was rendered."""

    evidence: dict
    figures: dict[str, str]
    generated_at: str
    generated_by: str

    @property
    def content_hash(self) -> str:
        return json_hash(self.evidence)


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def _png(fig) -> str:
    return base64.b64encode(plain_figure(fig).to_image(format="png", width=900, height=330, scale=1)).decode()


def _records(frame: pd.DataFrame, columns: Sequence[str] | None = None, digits: int = 3) -> list[dict]:
    frame = frame if columns is None else frame[[c for c in columns if c in frame]]
    out = []
    for row in frame.to_dict("records"):
        out.append({k: (round(float(v), digits) if isinstance(v, (float, np.floating)) and np.isfinite(v) else
                        ("" if isinstance(v, (float, np.floating)) else v)) for k, v in row.items()})
    return out


def gather(ws: Workspace, handle: ModelHandle, cohort: Cohort, *, baseline: ModelHandle | None = None,
           by: Sequence[str] = (), k: int = 10, author: Identity, trust_methods: Sequence[str] = ("saliency",
                                                                                                    "grad_cam"),
           trust_cases: int = 16, reference: dict | None = None, figures: bool = True,
           monitoring: Cohort | None = None, window: str = "acquired_month",
           progress: Progress | None = None) -> ReportData:
    """Everything the report states, computed (or read from the caches) for ``handle`` on ``cohort``; ``baseline``
    adds the version comparison; ``by`` the groups (numeric attributes in bands); ``k`` the smallest group shown;
    ``reference``: attribute → {group: expected share} to compare the cohort's make-up against; ``monitoring``: an
    incoming cohort with a ``window`` column, checked for drift against ``cohort`` (the Monitoring section)."""
    say = progress or (lambda _m: None)
    record = Record(ws.root)
    by = list(by)
    frame_all = with_bands(cohort.frame())
    missing = [b for b in by if b not in frame_all]
    if missing:
        raise InvalidInputError(f"--by {','.join(missing)}: not an attribute of {cohort.name!r}; available: "
                                f"{', '.join(c for c in frame_all.columns if not c.startswith('_') and c not in ('case_id', 'image', 'mask', 'label'))}")
    split = held_out_split(frame_all)
    synthetic = is_generated(ws.root, cohort.name)
    evidence: dict = {"synthetic": synthetic, "k": int(k), "split": split or "all labelled cases", "by": by}
    figs: dict[str, str] = {}

    # -- provenance -----------------------------------------------------------------------------------------------
    say("provenance")
    report = cohort.report
    evidence["provenance"] = {
        "packages": {p: _version(p) for p in PACKAGES},
        "model": {"name": handle.name, "version": handle.version, "hash": handle.weights_hash, "task": handle.task,
                  "classes": list(handle.class_names), "preprocessing": handle.preprocessing.describe(),
                  "card": {"intended_use": handle.card.intended_use, "training_data": handle.card.training_data,
                           "limitations": list(handle.card.limitations or []), **{
                               str(key): str(v) for key, v in handle.card.extra.items()}}},
        "baseline": ({"version": baseline.version, "hash": baseline.weights_hash} if baseline else None),
        "cohort": {"name": cohort.name, "hash": cohort.content_hash, "cases": len(cohort),
                   "patients": cohort.n_patients, "rejected": report.n_rejected, "rows": report.n_rows},
    }

    # -- cohort: who is represented, what was rejected -------------------------------------------------------------
    say("cohort")
    groups = []
    # one suppression decision over every table of the report and of the board's pages (margins, intersections)
    decision = board_decision(cohort, k, floor=operator_settings().board_k if author.is_board else None)
    for attr in by:
        counts = group_counts(cohort, attr, handle.class_names)
        hide = decision.for_table(dict(zip(counts[attr].astype(str), counts["n"])), attr)
        rows = []
        for r in counts.itertuples(index=False):
            name = str(getattr(r, attr))
            expected = (reference or {}).get(attr, {}).get(name)
            rows.append({"group": name, "n": int(r.n) if hide.shows(name) else f"<{k}",
                         "share": round(r.n / len(cohort), 3) if hide.shows(name) else f"<{k}",
                         "reference": expected if expected is not None else ""})
        groups.append({"attribute": attr, "rows": rows, "note": hide.note})
    # rejected rows by reason only: never a case id, row number, path or value
    evidence["cohort"] = {"groups": groups, "rejected": _records(rejections_by_reason(report.rejections))}

    # -- performance ---------------------------------------------------------------------------------------------
    say("performance")
    preds = ws.predictions(handle, cohort)
    selected = frame_all[frame_all["split"] == split] if split else frame_all
    top = handle.judged_by_top_class
    positive = handle.n_classes - 1
    point = None if top else ws.operating_point(handle, cohort, positive)
    if selected["label"].notna().any() and by:
        if top:
            labelled = selected[selected["label"].notna()].merge(preds.frame, on="case_id")
            sub = multiclass_report(labelled, by, handle.class_names)
            metric = "accuracy"
        else:
            labelled = labelled_frame(selected, preds, positive)
            sub = subgroup_report(labelled, by, class_index=positive, threshold=point.threshold)
            metric = "auroc"
        hide = decision.for_table(dict(zip(sub.table["group"], sub.table["n"])), by,
                                  where={"split": [split]} if split else None, labelled=True)
        table = hide.table(_with_intervals(sub.table, ["auroc", "sensitivity", "specificity", "accuracy",
                                                       "balanced_accuracy", "ece"]))
        # gaps judged among the groups shown, none computed from a hidden one: the judgement `glassbox subgroups
        # --board` and the Subgroups page state (evaluation.gates.shown_gaps)
        view = shown_gaps(sub, labelled, by, hide, rebuild=lambda seen: (
            multiclass_report(seen, by, handle.class_names) if top else
            subgroup_report(seen, by, class_index=positive, threshold=point.threshold)))
        gaps = view.gaps()
        overall = sub.table.set_index("group").loc["overall"]
        clinical = {}
        if not top:
            prevalence = float(labelled[OUTCOME].mean())
            sens, spec = float(overall["sensitivity"]), float(overall["specificity"])
            clinical = {
                "sensitivity": round(sens, 3), "sensitivity_ci": [round(float(overall["sensitivity_lo"]), 3),
                                                                  round(float(overall["sensitivity_hi"]), 3)],
                "specificity": round(spec, 3), "prevalence": round(prevalence, 3),
                "threshold": round(point.threshold, 3), "rule": point.describe()}
            # missed positives and false alarms per 1000 cases, each with its Wilson interval (patients clustered)
            rates = clinical_rates(labelled[OUTCOME].to_numpy(), (labelled[SCORE] >= point.threshold).to_numpy(),
                                   clusters=_clusters(labelled))
            for name in ("missed", "false_alarms"):
                clinical[f"{name}_per_1000"] = round(rates[name], 1)
                clinical[f"{name}_per_1000_ci"] = [round(v, 1) for v in rates[f"{name}_ci"]]
            clinical["referral"] = _referral(ws, handle, cohort, labelled, point.threshold)
        evidence["performance"] = {
            "table": _records(table), "gaps": _records(gaps, ["metric", "higher_group", "lower_group", "difference",
                                                               "difference_lo", "difference_hi"]),
            "flags": view.flags(), "judgement": view.judgement(), "suppression": hide.note,
            "clinical": clinical, "resampling": f"{sub.n_boot} bootstrap resamples", "view": "top class" if top else
            f"{handle.class_names[positive]} at the shared threshold"}
        if figures:
            shown = sub.table[sub.table["group"].astype(str).map(hide.shows)]
            figs["forest"] = _png(forest_plot(shown, metric))
    else:
        evidence["performance"] = {"table": [], "gaps": [], "flags": [], "clinical": {}, "suppression": "",
                                   "judgement": "not computed: no labels, or no --by attribute given"}
        hide = suppression({}, k)

    # -- explanations ----------------------------------------------------------------------------------------------
    say("explanations (trust checks over a stratified sample)")
    explanations: dict = {"methods": list(trust_methods), "cases": 0, "summary": [], "words": []}
    if trust_methods and frame_all["label"].notna().any():
        checks, sample = explanation_quality(ws, handle, cohort, list(trust_methods), n_cases=trust_cases,
                                             strata=by[:1])
        summary = quality_summary(checks, sample)
        # the band over cases with its reason (could not judge: why; the pointing game: its hit rate read against
        # chance and the clinical reference named on the check's entry)
        explanations.update(cases=len(sample), summary=_records(summary, ["method", "check", "mean", "lo", "hi",
                                                                          "band", "reference", "reason"]),
                            words=[w.replace("**", "") for w in trust_in_words(summary)])
    facts = demo_facts(ws.root) if synthetic else None
    explanations["concepts"] = [c["sentence"] + ("" if c.get("stale") else " (holds)" if c["holds"] else
                                                 " (does not hold)")
                                for c in (facts or {}).get("checks", []) if "TCAV" in c["sentence"]
                                and handle.version in c["sentence"]]
    examples = []
    if handle.preprocessing.input_shape and len(handle.preprocessing.input_shape) == 3:  # 2D: (C, H, W)
        # illustrative cases chosen by rule, never by hand: the most confident correct positive and the most
        # confident error, from groups a board may see; shown without identifiers
        judged = with_outcomes(selected.merge(preds.frame, on="case_id"), None if top else positive,
                               0.5 if top else point.threshold, n_classes=handle.n_classes)
        judged = judged[judged["label"].notna()]
        if by:
            judged = judged[judged[by].astype(str).agg(" · ".join, axis=1).map(hide.shows)]
        right = judged[~judged["error"] & (judged["label"] == positive)] if not top else judged[~judged["error"]]
        # Grad-CAM where the model can be hooked (TorchScript cannot), else plain gradients
        method = "grad_cam" if handle.hookable else "saliency"
        for kind, pool in (("a confident correct call", right), ("the most confident error", judged[judged["error"]])):
            if pool.empty:
                continue
            row = pool.loc[(pool["probability"] - 0.5).abs().idxmax()]
            key = f"example_{len(examples)}"
            if figures:  # the figure is drawn; which case and what is said of it do not depend on drawing
                case = cohort.case(row["case_id"])
                (a,) = ws.attributions(handle, [case], method, int(row["predicted"]) if top else positive)
                image = on_model_grid(handle.preprocessing, read_image(case.image)).array
                spatial, rgb = display_image(image)
                fig = case_views(spatial, (1.0, 1.0), title="", attribution=a.spatial_map(), rgb=rgb,
                                 window=float(spatial.max() - spatial.min()) or 1.0,
                                 level=float(spatial.max() + spatial.min()) / 2)[0]
                figs[key] = base64.b64encode(fig.to_image(format="png", width=320, height=320)).decode()
            groups_text = ", ".join(f"{b} {row[b]}" for b in by)
            examples.append({"figure": key, "caption": f"{kind}: {row['outcome']}, p = {row['probability']:.2f}"
                                                       + (f" ({groups_text})" if groups_text else "")
                                                       + f"; {SALIENCY_METHODS.get(method).title} over the image"})
    explanations["examples"] = examples
    evidence["explanations"] = explanations

    # -- version comparison --------------------------------------------------------------------------------------
    if baseline is not None:
        say("version comparison")
        result = compare(ws, baseline, handle, cohort, by=by, where={"split": split} if split else None,
                         class_index=None if top else positive)
        table = result.report.table
        table = table[table["group"].astype(str).map(hide.shows)] if "group" in table else table
        keep = ["group", "metric", "baseline", "candidate", "delta", "delta_lo", "delta_hi", "verdict"]
        evidence["comparison"] = {"baseline": baseline.version, "table": _records(table, keep),
                                  "flips": {kind: int(result.summary[kind]) for kind in FLIP_KINDS},
                                  "mcnemar_p": float(result.summary["mcnemar_p"]),
                                  "mcnemar_design": mcnemar_design(result.summary)}

    # -- reviewers -----------------------------------------------------------------------------------------------
    say("reviewers")
    verdicts = record.verdicts(model_hash=handle.weights_hash, cohort_hash=cohort.content_hash)
    reviewers: dict = {"verdicts": len(verdicts), "readers": int(verdicts["reader"].nunique()) if len(verdicts) else 0}
    if len(verdicts):
        agreement = model_vs_reader(verdicts, frame_all, by[:1])
        reader_hide = suppression(dict(zip(agreement["group"], agreement["n"])), k)
        reviewers["counts"] = {a: int((verdicts["agreement"] == a).sum()) for a in ("agree", "disagree", "unsure")}
        reviewers["by_group"] = _records(reader_hide.table(agreement), ["group", "n", "agree", "agree_lo",
                                                                        "agree_hi", "explanation_useful",
                                                                        "explanation_misleading", "notes"])
        reviewers["flagged"] = int(verdicts["flag_board"].sum())
        # patients resampled where known; an undefined kappa (one category only) is "could not judge", in words,
        # never a number, and its blank interval reads as "–"
        pairs = pairs_in_words(verdicts, frame_all)
        reviewers["pairs"] = [{**p, **{c: p[c] if p[c] != "" else ("not defined" if c == "kappa" else "–")
                                       for c in ("kappa", "kappa_lo", "kappa_hi")}}
                              for p in _records(pairs, ["reader_1", "reader_2", "cases", "raw_agreement", "kappa",
                                                        "kappa_lo", "kappa_hi", "verdict", "words"])]
    evidence["reviewers"] = reviewers

    # -- monitoring ----------------------------------------------------------------------------------------------
    if monitoring is not None:
        say("monitoring (drift of the incoming cohort)")
        # a site's window under k cases is not shown to the board, nor named in a sentence
        drift = monitor(ws, handle, cohort, monitoring, window=window).for_board(k)
        w = drift.windows
        sites = drift.sites
        evidence["monitoring"] = {
            "current": monitoring.name, "hash": monitoring.content_hash[:16], "window": window,
            "judged_by": drift.operating_point, "warnings": list(drift.warnings), "suppression": drift.note,
            "alerts": drift.alerts,
            "alpha": drift.alpha, "windows": _records(w.assign(alert=w["alert"].map({True: "ALERT", False: ""})), [
                "window", "n", "mmd_p_adj", "alert", "mean_probability", "called_positive", "intensity_shift_sd",
                "estimated_accuracy", "accuracy", "labelled"]),
            "first_alert": str(w.loc[w["alert"], "window"].min()) if w["alert"].any() else "",
            "sites": [f"since {r.window}, site {r.site}'s images differ from the reference"
                      + (f" (new scanner: {r.new_scanner})" if r.new_scanner else "") for r in sites.itertuples()]}

    # -- the lifecycle checklist -----------------------------------------------------------------------------------
    answers = record.answers(model_hash=handle.weights_hash, cohort_hash=cohort.content_hash).set_index("question")
    evidence["checklist"] = [{**q, "evidence": _evidence(q["id"], evidence),
                              "answer": str(answers.loc[q["id"], "answer"]) if q["id"] in answers.index else "",
                              "open_items": str(answers.loc[q["id"], "open_items"]) if q["id"] in answers.index
                              else "",
                              "answered_by": str(answers.loc[q["id"], "member"]) if q["id"] in answers.index else ""}
                             for q in CHECKLIST["questions"]]
    return ReportData(evidence=evidence, figures=figs, generated_at=dt.datetime.now(dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"), generated_by=f"{author.name} ({author.role})")


def _clusters(frame: pd.DataFrame) -> np.ndarray | None:
    """Each case's patient where the cohort knows every case's, else None (cases independent)."""
    return frame[CLUSTER].to_numpy() if CLUSTER in frame and frame[CLUSTER].notna().all() else None


def _referral(ws: Workspace, handle: ModelHandle, cohort: Cohort, labelled: pd.DataFrame, threshold: float,
              fraction: float = REFER_FRACTION) -> dict | None:
    """What referring the most uncertain ``fraction`` of the cohort to a reader (``evaluation.referral``) does at
    the operating threshold, from the cached uncertainty (never computed for a report): share referred, and
    sensitivity and missed cases per 1000 among the cases the model keeps, each with its 95% Wilson interval
    (patients clustered where known). None when no uncertainty was computed."""
    from explainers.uncertainty import default_method

    method = default_method(handle)
    unc = uncertainty(ws, [handle], cohort, method, cached_only=True)
    if unc is None:
        return None
    entropy = pd.Series(unc.figure(ENTROPY), index=unc.case_ids)
    out = referral_outcomes(labelled["case_id"].map(entropy).to_numpy(float), labelled[OUTCOME].to_numpy(),
                            (labelled[SCORE] >= threshold).to_numpy(), cutoff=referral_cutoff(entropy, fraction),
                            clusters=_clusters(labelled))
    if out is None:
        return None
    return {"method": method, "fraction": fraction, "referred": round(out["referred"], 3),
            "referred_ci": [round(v, 3) for v in out["referred_ci"]],
            "sensitivity_kept": round(out["sensitivity_kept"], 3),
            "sensitivity_kept_ci": [round(v, 3) for v in out["sensitivity_kept_ci"]],
            "missed_per_1000_kept": round(out["missed_per_kept"], 1),
            "missed_per_1000_kept_ci": [round(v, 1) for v in out["missed_per_kept_ci"]]}


def _with_intervals(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Each metric as one printable cell, ``0.972 (0.952–0.986)``, so a table fits a page."""
    out = table[["group", "n"]].copy()
    for m in metrics:
        if m in table:
            out[m] = [(f"{v:.3f} ({lo:.3f}–{hi:.3f})" if np.isfinite(lo) and np.isfinite(hi) else
                       f"{v:.3f} (too small to judge)") if np.isfinite(v) else "" for v, lo, hi in
                      zip(table[m], table.get(f"{m}_lo", table[m]), table.get(f"{m}_hi", table[m]))]
    if "ece" in out and "ece_chance" in table:  # ECE beside what a perfectly calibrated model reads at that n,
        # with no interval (biased at small n) but the consistency test's p (Holm over the groups)
        p = table["ece_p_holm"] if "ece_p_holm" in table else table.get("ece_p", table["ece_chance"] * np.nan)
        out["ece"] = [ece_text(v, c, q) for v, c, q in zip(table["ece"], table["ece_chance"], p)]
    out["notes"] = table["notes"] if "notes" in table else ""
    return out


def _evidence(question: str, e: dict) -> str:
    """What Glassbox itself produced towards a lifecycle question, in words."""
    perf, cohort, prov = e.get("performance", {}), e.get("cohort", {}), e["provenance"]
    if question == "representation":
        return (f"Cases per group for {', '.join(e['by']) or 'no attribute'} (groups under {e['k']} hidden)"
                + ("; compared with the reference distribution given" if any(
                    r["reference"] != "" for g in cohort.get("groups", []) for r in g["rows"]) else
                   "; no reference distribution was given") + ".")
    if question == "confidentiality":
        return ("Identifier columns and DICOM identifiers are dropped on load; patient ids are kept only as keyed "
                "hashes; the audit log names cases only by keyed hash; groups under k are suppressed in this report.")
    if question == "documented_steps":
        return (f"Preprocessing: {prov['model']['preprocessing']}. {prov['cohort']['rejected']} of "
                f"{prov['cohort']['rows']} rows rejected, with reasons (Cohort section).")
    if question == "bias_methods":
        return (f"Subgroup metrics with 95% intervals and simultaneous gap intervals: {perf.get('judgement', '')}."
                if perf.get("table") else "Not measured: no labelled groups.")
    if question == "decision_tracking":
        comparison = e.get("comparison")
        return (f"Compared with {comparison['baseline']}: {comparison['flips']['fixed']} cases fixed, "
                f"{comparison['flips']['broken']} broken (McNemar p {comparison['mcnemar_p']:.2g}); every review "
                "action is in the hash-chained audit log." if comparison else
                "Model hashes are recorded; no earlier version was compared in this report.")
    if question == "consent_sources":
        return ("Synthetic data generated by `glassbox demo`: no patients, no consent needed." if e["synthetic"] else
                f"Training data as the model card states: {prov['model']['card']['training_data']}")
    if question == "understandable":
        ex = e.get("explanations", {})
        return (f"Trust checks of {', '.join(ex.get('methods', []))} over {ex.get('cases', 0)} cases, in words "
                "(Explanations section); clinical figures per 1000 cases.")
    if question == "clinical_metrics":
        c = perf.get("clinical") or {}
        r = c.get("referral")
        return (f"Sensitivity {c['sensitivity']} (95% CI {c['sensitivity_ci'][0]}–{c['sensitivity_ci'][1]}): "
                f"{c['missed_per_1000']} missed cases (95% CI {c['missed_per_1000_ci'][0]}–"
                f"{c['missed_per_1000_ci'][1]}) and {c['false_alarms_per_1000']} false alarms (95% CI "
                f"{c['false_alarms_per_1000_ci'][0]}–{c['false_alarms_per_1000_ci'][1]}) per 1000 cases at "
                f"threshold {c['threshold']}" + (
                    f"; referring the {r['fraction']:.0%} most uncertain refers {r['referred']} (95% CI "
                    f"{r['referred_ci'][0]}–{r['referred_ci'][1]}), and among the kept cases sensitivity is "
                    f"{r['sensitivity_kept']} ({r['sensitivity_kept_ci'][0]}–{r['sensitivity_kept_ci'][1]}) with "
                    f"{r['missed_per_1000_kept']} missed per 1000 kept ({r['missed_per_1000_kept_ci'][0]}–"
                    f"{r['missed_per_1000_kept_ci'][1]})" if r else "") + "."
                if c else "Top-class accuracy and calibration per group.")
    if question == "monitoring_plan":
        m = e.get("monitoring")
        if not m:
            return ("Not measured in this report: `glassbox monitor --reference … --current … --alert mmd_p=0.01` "
                    "runs on a schedule and exits 1 on drift; give `--monitor COHORT` to include it here.")
        found = f"input drift from {m['first_alert']}" if m["first_alert"] else "no input drift"
        return (f"Drift of {m['current']} against this cohort per {m['window']} (Monitoring section): {found} at "
                f"Holm-adjusted p < {m['alpha']:g}; performance judged by the model's {m.get('judged_by') or 'outcome'}"
                + (f" (warning: {'; '.join(m['warnings'])})" if m.get("warnings") else "") + ".")
    if question == "risk_communication":
        r = e.get("reviewers", {})
        return f"{r.get('verdicts', 0)} reader verdicts from {r.get('readers', 0)} reader(s) (Reviewers section)."
    return "Not produced by Glassbox: the board's own answer is needed."


def _signatures(record: Record | None, report_hash: str) -> list[dict]:
    """The sign-offs of ``report_hash`` with the number and hash of the audit entry that recorded each."""
    if record is None:
        return []
    log = record.audit(action="sign_off")
    out = []
    for row in log.itertuples():
        if json.loads(row.objects).get("report") == report_hash:
            out.append({"actor": row.actor, "role": row.role, "at": row.at, "seq": int(row.seq), "entry": row.hash})
    return out


def render_html(data: ReportData, record: Record | None = None) -> str:
    """The report as one HTML document (the PDF is this page printed by WeasyPrint), sealed (see the module)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(ASSETS), autoescape=select_autoescape(["html", "j2"]))
    signatures = _signatures(record, data.content_hash)
    html = env.get_template("report.html.j2").render(
        e=data.evidence, figures=data.figures, content_hash=data.content_hash, generated_at=data.generated_at,
        generated_by=data.generated_by, signoffs=signatures, source=CHECKLIST["source"])
    return _seal_html(html, data.content_hash, signatures, record.chain_root() if record is not None else None)


# -- seals: a kept report checked against what it was when Glassbox wrote it --------------------------------------
SEAL_FORMAT = "glassbox-report-seal-1"
_SEAL_META = re.compile(r'^<meta name="glassbox-seal" content="([A-Za-z0-9+/=]*)">\n', re.M)
_PDF_SEAL = re.compile(rb"\n%GLASSBOX-SEAL ([A-Za-z0-9+/=]+)\nstartxref\n(\d+)\n%%EOF\n?$")
_SECTION = re.compile(r'<h2 id="([\w-]+)"')
_TAGS = re.compile(r"<[^>]*>")


def _seal_key() -> str:
    return integrity_key("report-seal")


def _sign(seal: dict) -> dict:
    body = json.dumps(seal, sort_keys=True, separators=(",", ":")).encode()
    return {**seal, "mac": mac(_seal_key(), body)}


def _seal_holds(seal: dict) -> bool:
    body = json.dumps({k: v for k, v in seal.items() if k != "mac"}, sort_keys=True, separators=(",", ":")).encode()
    return mac_matches(_seal_key(), body, seal.get("mac"))


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()[:16]


def _html_sections(lines: Sequence[str]) -> list[str]:
    """The report section each line belongs to (the ``<h2 id>`` above it; ``heading`` before the first)."""
    current, out = "heading", []
    for line in lines:
        found = _SECTION.search(line)
        if found:
            current = found.group(1)
        out.append(current)
    return out


def _seal_html(html: str, report_hash: str, signatures: list[dict], record_root: str | None = None) -> str:
    lines = html.split("\n")
    seal = _sign({"format": SEAL_FORMAT, "kind": "html", "report": report_hash,
                  "document": hashlib.sha256(html.encode()).hexdigest(), "lines": [_line_hash(x) for x in lines],
                  "signatures": signatures, "record": record_root})
    token = base64.b64encode(json.dumps(seal, separators=(",", ":")).encode()).decode()
    head = html.find("<head>")
    if head < 0:
        raise InvalidInputError("the report template has no <head> to hold its seal")
    at = html.index("\n", head) + 1
    return html[:at] + f'<meta name="glassbox-seal" content="{token}">\n' + html[at:]


def _html_seal(text: str) -> tuple[dict | None, str]:
    """The seal of an HTML report and the document without it; (None, text) when there is none."""
    found = list(_SEAL_META.finditer(text))
    if len(found) != 1:
        return None, text
    m = found[0]
    try:
        seal = json.loads(base64.b64decode(m.group(1)))
    except ValueError:
        return None, text
    return (seal if isinstance(seal, dict) else None), text[:m.start()] + text[m.end():]


def _pdf_text_pages(pdf: bytes) -> list[list[str]] | None:
    """The PDF's text per page, lines stripped and empty ones dropped (poppler's ``pdftotext``); None without it."""
    tool = shutil.which("pdftotext")
    if tool is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(pdf)
        f.flush()
        try:
            done = subprocess.run([tool, "-enc", "UTF-8", f.name, "-"], capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
    if done.returncode != 0:
        return None
    pages = done.stdout.decode("utf-8", "replace").split("\f")
    if pages and not pages[-1].strip():
        pages = pages[:-1]
    return [[ln.strip() for ln in page.splitlines() if ln.strip()] for page in pages]


def pdf_bytes(html: str) -> bytes:
    """The report's HTML printed to PDF by WeasyPrint (A4, page numbers and headers from the template's @page),
    sealed when the HTML is (the report hash and sign-offs of its seal, the SHA-256 of the PDF, its text lines)."""
    from weasyprint import HTML

    pdf = HTML(string=html, base_url=str(ASSETS)).write_pdf()
    seal, _ = _html_seal(html)
    if seal is None:
        return pdf
    tail = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", pdf)
    if tail is None:
        return pdf
    pages = _pdf_text_pages(pdf)
    pdf_seal = _sign({"format": SEAL_FORMAT, "kind": "pdf", "report": seal.get("report"),
                      "document": hashlib.sha256(pdf).hexdigest(), "html": seal.get("document"),
                      "pages": [[_line_hash(x) for x in page] for page in pages] if pages is not None else None,
                      "signatures": seal.get("signatures", []), "record": seal.get("record")})
    token = base64.b64encode(json.dumps(pdf_seal, separators=(",", ":")).encode())
    return pdf + b"\n%GLASSBOX-SEAL " + token + b"\nstartxref\n" + tail.group(1) + b"\n%%EOF\n"


def write_report(data: ReportData, out: Path, record: Record | None = None) -> Path:
    """``out`` as ``.html`` or ``.pdf`` (the same template), written atomically (a full disk leaves no partial
    file and an earlier report intact, with a named error)."""
    html = render_html(data, record)
    if out.suffix.lower() == ".pdf":
        write_file(out, pdf_bytes(html))
    elif out.suffix.lower() in (".html", ".htm"):
        write_file(out, html)
    else:
        raise InvalidInputError(f"--out {out}: give a .pdf or .html file")
    return out


@dataclasses.dataclass(frozen=True)
class ReportCheck:
    """What :func:`verify_report` found: ``ok`` (the file is as Glassbox wrote it and its sign-offs are on record),
    the report hash it states, what changed (section or page and line, in words), the sign-offs and notes."""

    ok: bool
    kind: str
    report: str = ""
    changes: tuple[str, ...] = ()
    signatures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        lines = []
        if self.ok:
            lines.append(f"report file intact: {self.kind.upper()} of report {self.report[:16]}, as Glassbox wrote "
                         "it (its seal's MAC holds under this operator's key)")
        else:
            lines.append(f"report file NOT intact ({self.kind.upper()}" + (f" of report {self.report[:16]}"
                                                                          if self.report else "") + "):")
        lines += [f"  changed: {c}" for c in self.changes]
        lines += [f"  {s}" for s in self.signatures]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _shown(text: str, limit: int = 90) -> str:
    """A changed line as a reader would see it (markup dropped, shortened); a line of markup only (a figure) named."""
    plain = html_lib.unescape(_TAGS.sub(" ", text))
    plain = " ".join(plain.split())
    if not plain:
        return "a figure" if "<img" in text else "markup only"
    return (plain[:limit] + "…") if len(plain) > limit else plain


def _changed_lines(old: Sequence[str], new: Sequence[str], where: Callable[[int], str], text: Callable[[int], str],
                   limit: int = 12) -> list[str]:
    """Lines of the file (by their hashes ``new``) that differ from those sealed (``old``), in words."""
    import difflib

    out = []
    for tag, a0, a1, b0, b1 in difflib.SequenceMatcher(a=list(old), b=list(new), autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "delete":
            out.append(f"{where(b0) if b0 < len(new) else where(len(new) - 1)}: {a1 - a0} line(s) removed")
        else:
            for b in range(b0, b1):
                out.append(f"{where(b)}: {'added' if tag == 'insert' else 'edited'}: \"{text(b)}\"")
        if len(out) >= limit:
            out.append("… and more")
            break
    return out[:limit + 1]


def _check_signatures(seal: dict, record: Record | None) -> tuple[list[str], list[str], bool]:
    """The sign-offs the seal states, each checked against the audit log when there is one: (lines, notes, ok)."""
    stated, notes, ok = [], [], True
    sigs = seal.get("signatures") or []
    if record is None:
        return ([f"states: signed by {s['actor']} ({s['role']}) at {s['at']} (audit entry {s['seq']}; no record "
                 "given to check it against)" for s in sigs], notes, True)
    if sigs and seal.get("record") and record.chain_root() != seal["record"]:
        return ([f"states: signed by {s['actor']} ({s['role']}) at {s['at']}: cannot be checked here, the record "
                 "given is another workspace's (give --workspace of the workspace this report was made in)"
                 for s in sigs], notes, False)
    check = record.verify()
    if not check.ok:
        notes.append(check.describe())
        ok = False
    log = record.audit(action="sign_off").set_index("seq")
    for s in sigs:
        entry = log.loc[s["seq"]] if s["seq"] in log.index else None
        holds = (entry is not None and entry["hash"] == s["entry"] and entry["actor"] == s["actor"]
                 and json.loads(entry["objects"]).get("report") == seal.get("report"))
        stated.append(f"signed by {s['actor']} ({s['role']}) at {s['at']}: "
                      + (f"audit entry {s['seq']} holds it" if holds else
                         f"NOT on record (audit entry {s['seq']} is not that sign-off)"))
        ok = ok and holds
    later = [r for r in _signatures(record, str(seal.get("report", ""))) if r["seq"] not in {s["seq"] for s in sigs}]
    notes += [f"also signed by {r['actor']} ({r['role']}) at {r['at']}, after this file was made" for r in later]
    return stated, notes, ok


def verify_report(path: str | Path, record: Record | None = None) -> ReportCheck:
    """Check a kept HTML or PDF report against its seal (see the module); with ``record``, check the sign-offs it
    states against the audit log too. Raises :class:`InvalidInputError` for a file that cannot be read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"{path}: cannot be read ({e.strerror or e})") from e
    kind = "pdf" if raw.startswith(b"%PDF") else "html"
    if kind == "pdf":
        return _verify_pdf(raw, record)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{path}: neither a PDF nor UTF-8 HTML (byte {e.start})") from e
    seal, body = _html_seal(text)
    if seal is None or seal.get("format") != SEAL_FORMAT:
        return ReportCheck(False, kind, changes=("the file carries no Glassbox seal (not a Glassbox report, made "
                                                 "before reports were sealed, or its seal was removed)",))
    if not _seal_holds(seal):
        return ReportCheck(False, kind, str(seal.get("report", "")), changes=(
            "the seal's MAC does not hold: the seal was edited, or the report was made under another operator's "
            "secret (check it where it was made)",))
    lines = body.split("\n")
    changes: list[str] = []
    if hashlib.sha256(body.encode()).hexdigest() != seal["document"]:
        sections = _html_sections(lines)
        changes = _changed_lines(seal["lines"], [_line_hash(x) for x in lines],
                                 lambda i: f"line {i + 1} (section {sections[i]})", lambda i: _shown(lines[i])) or [
            "the document's bytes differ from those sealed (line endings or encoding)"]
    stated, notes, signed_ok = _check_signatures(seal, record)
    return ReportCheck(not changes and signed_ok, kind, seal["report"], tuple(changes), tuple(stated), tuple(notes))


def _verify_pdf(raw: bytes, record: Record | None) -> ReportCheck:
    found = _PDF_SEAL.search(raw)
    if found is None:
        return ReportCheck(False, "pdf", changes=("the file carries no Glassbox seal (not a Glassbox report, made "
                                                  "before reports were sealed, or rewritten by another program)",))
    try:
        seal = json.loads(base64.b64decode(found.group(1)))
    except ValueError:
        seal = None
    if not isinstance(seal, dict) or seal.get("format") != SEAL_FORMAT or not _seal_holds(seal):
        return ReportCheck(False, "pdf", changes=(
            "the seal's MAC does not hold: the seal was edited, or the report was made under another operator's "
            "secret (check it where it was made)",))
    pdf = raw[:found.start()]
    changes: list[str] = []
    notes: list[str] = []
    tail = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", pdf)
    if hashlib.sha256(pdf).hexdigest() != seal["document"] or tail is None or tail.group(1) != found.group(2):
        pages = _pdf_text_pages(pdf)
        if pages is None or seal.get("pages") is None:
            changes.append("the PDF's bytes differ from those sealed" + (
                " (install poppler-utils' pdftotext to name the page and line)" if pages is None else ""))
        else:
            old = [(p, h) for p, page in enumerate(seal["pages"], 1) for h in page]
            new = [(p, ln) for p, page in enumerate(pages, 1) for ln in page]
            changes = _changed_lines([h for _, h in old], [_line_hash(ln) for _, ln in new],
                                     lambda i: f"page {new[i][0]}", lambda i: _shown(new[i][1]))
            if not changes:
                changes = ["the PDF's bytes differ from those sealed, though its text reads the same (images, "
                           "fonts or metadata were changed)"]
    stated, more, signed_ok = _check_signatures(seal, record)
    notes += more
    return ReportCheck(not changes and signed_ok, "pdf", str(seal.get("report", "")), tuple(changes), tuple(stated),
                       tuple(notes))


#: the published schema the model card export follows (Mitchell et al., "Model Cards for Model Reporting", FAT* 2019)
MODEL_CARD_SCHEMA = "Model Card Toolkit schema v0.0.2 (github.com/tensorflow/model-card-toolkit)"


def model_card(data: ReportData) -> dict:
    """The report's model card as JSON in the Model Card Toolkit schema v0.0.2: model details, parameters (the
    cohort as evaluation data, with what is sensitive in it), performance per shown group (hidden groups are not
    sliced), and considerations (intended use, limitations, the gaps found as risks with the board's answers as
    mitigation)."""
    e = data.evidence
    prov, perf = e["provenance"], e.get("performance", {})
    metrics = []
    for row in perf.get("table", []):
        for name, cell in row.items():
            if name in ("group", "n", "notes") or not isinstance(cell, str) or not cell[:1].isdigit():
                continue  # "<k" (hidden) and empty cells are not metrics
            metrics.append({"type": name, "value": float(cell.split(" ")[0]),
                            "slice": "overall" if row["group"] == "overall" else f"{'·'.join(e['by'])}={row['group']}"})
    answers = {q["id"]: q for q in e.get("checklist", [])}
    risk_answer = answers.get("risk_communication", {}).get("answer", "")
    card = prov["model"]["card"]
    return {
        "schema_version": "0.0.2",
        "model_details": {
            "name": prov["model"]["name"], "overview": card["intended_use"],
            "documentation": f"Glassbox board report {data.content_hash}; weights SHA-256 {prov['model']['hash']}.",
            "version": {"name": prov["model"]["version"], "diff": (
                f"against {e['comparison']['baseline']}: {e['comparison']['flips']['fixed']} cases fixed, "
                f"{e['comparison']['flips']['broken']} broken" if e.get("comparison") else "")},
        },
        "model_parameters": {
            "model_architecture": f"{prov['model']['task']} classifier; classes {', '.join(prov['model']['classes'])}",
            "input_format": prov["model"]["preprocessing"], "output_format": "a probability per class",
            "data": [{"name": prov["cohort"]["name"], "description": (
                f"{prov['cohort']['cases']} cases (evaluated: {e['split']}); content SHA-256 {prov['cohort']['hash']}"
                + ("; SYNTHETIC, generated by glassbox demo" if e["synthetic"] else "")),
                "sensitive": {"sensitive_data": ["none: generated data"] if e["synthetic"] else [
                    "patient images; identifiers dropped on load, patient ids kept only as keyed hashes"]}}],
        },
        "quantitative_analysis": {"performance_metrics": metrics},
        "considerations": {
            "users": [{"description": "radiologists reviewing cases; model developers; the ethics board"}],
            "use_cases": [{"description": card["intended_use"]}],
            "limitations": [{"description": text} for text in card["limitations"]],
            "ethical_considerations": [{"name": f"Gap: {flag}", "mitigation_strategy": risk_answer}
                                       for flag in perf.get("flags", [])],
        },
    }

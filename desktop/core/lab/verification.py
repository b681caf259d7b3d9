"""The verification study a lab runs before it relies on an analyser (after CLSI H20-A2):
the model's calls against its own technicians' final calls, over its signed-off sessions.

Cell by cell: confusion matrix, per-class sensitivity and PPV with Wilson intervals, overall
agreement and Cohen's kappa. Session by session: the AI and the final differential, with
the mean bias and Bland–Altman limits of agreement per class. And a plain verdict against
the model card's in-domain accuracy.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

from desktop.core.inference.model_info import ModelInfo
from desktop.core.lab.site_cells import SignedSession
from desktop.core.report.precision import Z95, wilson
from desktop.core.report.summary import class_percentages

MIN_CELLS_FOR_VERDICT = 100
TOLERANCE = 0.02  # agreement may sit this far below the card's accuracy and still count as "as the card says"


def cohen_kappa(confusion: np.ndarray) -> float:
    total = confusion.sum()
    if total == 0:
        return float("nan")
    observed = np.trace(confusion) / total
    expected = float((confusion.sum(axis=0) * confusion.sum(axis=1)).sum()) / total ** 2
    return float((observed - expected) / (1 - expected)) if expected < 1 else float("nan")


def bland_altman(differences: list[float]) -> tuple[float, float, float, float]:
    """Mean bias, SD of the differences, and the 95% limits of agreement (bias ± 1.96 SD)."""
    d = np.asarray(differences, float)
    if len(d) == 0:
        return (float("nan"),) * 4
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    return bias, sd, bias - Z95 * sd, bias + Z95 * sd


@dataclass(frozen=True)
class ClassAgreement:
    key: str
    label: str
    n_final: int  # cells the technicians called this class
    n_ai: int  # cells the model called this class
    both: int
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    ppv: float
    ppv_ci: tuple[float, float]


@dataclass(frozen=True)
class SessionDifferential:
    name: str
    signed_at: str
    cells: int
    ai: dict[str, float | None]
    final: dict[str, float | None]


@dataclass(frozen=True)
class LimitsOfAgreement:
    key: str
    label: str
    sessions: int
    bias: float
    sd: float
    lower: float
    upper: float


FEW_SESSIONS = 40  # specimens a method comparison usually rests on (CLSI EP09 asks for at least 40)


@dataclass(frozen=True)
class VerificationReport:
    model: str
    card_accuracy: float | None
    sessions: int
    cells: int
    class_keys: list[str]
    confusion: np.ndarray  # rows: AI call, columns: final call
    classes: list[ClassAgreement]
    agreement: float
    agreement_ci: tuple[float, float]
    kappa: float
    per_session: list[SessionDifferential]
    limits: list[LimitsOfAgreement]
    review_rate: float
    unfamiliar_rate: float
    corrected: int
    verdict: str
    verified: bool | None  # None: too few cells to say
    caveats: list[str] = field(default_factory=list)


def _verdict(agreement: float, ci: tuple[float, float], cells: int, card: float | None) -> tuple[str, bool | None]:
    a = f"agreement {agreement:.1%} (95% CI {ci[0]:.1%}–{ci[1]:.1%}, {cells} cells)"
    if cells < MIN_CELLS_FOR_VERDICT:
        return f"Too few verified cells to judge: {a}; at least {MIN_CELLS_FOR_VERDICT} are needed.", None
    if card is None:
        return f"The model card gives no accuracy to compare with; {a}.", None
    if ci[1] < card - TOLERANCE:
        return (f"NOT verified for this lab: {a} is far below the model card's in-domain accuracy {card:.1%}. "
                "Do not rely on its calls here without full review; consider Tools → Adapt to this lab."), False
    if ci[0] >= card - TOLERANCE:
        return f"Performs at this lab as its card says: {a} against the card's {card:.1%}.", True
    if agreement >= card:  # never "below" when it is not
        return (f"Not yet verified: {a} matches the card's {card:.1%} so far, but the interval is still too wide to "
                f"show it (its low end must reach {card - TOLERANCE:.1%}). Verify more sessions."), None
    return (f"Not yet verified: {a} is below the card's {card:.1%}, but the interval still reaches it. "
            "Verify more sessions."), None


def build_report(sessions: list[SignedSession], info: ModelInfo) -> VerificationReport:
    keys = info.class_keys
    index = {k: i for i, k in enumerate(keys)}
    confusion = np.zeros((len(keys), len(keys)), int)
    per_session, reviewed, unfamiliar, corrected, total = [], 0, 0, 0, 0
    for s in sessions:
        cells = [c for c in s.verified() if c.ai_class in index and c.call in index]
        ai_counts = dict.fromkeys(keys, 0)
        final_counts = dict.fromkeys(keys, 0)
        for c in cells:
            final = c.call
            confusion[index[c.ai_class], index[final]] += 1
            ai_counts[c.ai_class] += 1
            final_counts[final] += 1
            reviewed += c.review
            unfamiliar += c.unfamiliar
            corrected += final != c.ai_class
        total += len(cells)
        per_session.append(SessionDifferential(s.name, s.meta.get("signed_at", ""), len(cells),
                                               class_percentages(ai_counts, info), class_percentages(final_counts, info)))
    classes = []
    for i, c in enumerate(info.classes):
        n_final, n_ai, both = int(confusion[:, i].sum()), int(confusion[i, :].sum()), int(confusion[i, i])
        classes.append(ClassAgreement(c.key, c.label, n_final, n_ai, both,
                                      both / n_final if n_final else float("nan"), wilson(both, n_final),
                                      both / n_ai if n_ai else float("nan"), wilson(both, n_ai)))
    agree = int(np.trace(confusion))
    agreement = agree / total if total else float("nan")
    ci = wilson(agree, total)
    limits = []
    for c in info.classes:
        pairs = [(s.ai[c.key], s.final[c.key]) for s in per_session if s.ai[c.key] is not None and s.final[c.key] is not None]
        bias, sd, lower, upper = bland_altman([a - f for a, f in pairs])
        if pairs:
            limits.append(LimitsOfAgreement(c.key, c.label, len(pairs), bias, sd, lower, upper))
    verdict, verified = _verdict(agreement, ci, total, info.accuracy)
    caveats = ["The technicians saw the model's call before making theirs, so agreement tends to be optimistic; "
               "a blind manual count on some specimens is the stricter check."]
    if len(per_session) < 2:
        caveats.append("Limits of agreement need at least two sessions.")
    elif len(per_session) < FEW_SESSIONS:
        caveats.append(f"The limits of agreement come from only {len(per_session)} sessions: they are rough, and may "
                       f"move a lot with more. A method comparison usually rests on {FEW_SESSIONS} or more specimens.")
    return VerificationReport(f"{info.display_name} ({info.key} v{info.version})", info.accuracy, len(sessions), total,
                              keys, confusion, classes, agreement, ci, cohen_kappa(confusion), per_session, limits,
                              reviewed / total if total else float("nan"), unfamiliar / total if total else float("nan"),
                              corrected, verdict, verified, caveats)


def _pct(v: float | None, digits: int = 1) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f}%"


def _num(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def report_rows(report: VerificationReport) -> list[list]:
    """The report as CSV rows (one table after another, a section column first)."""
    rows: list[list] = [["section", "item", "value", "low_95", "high_95", "n"],
                        ["summary", "model", report.model, "", "", ""],
                        ["summary", "verdict", report.verdict, "", "", ""],
                        ["summary", "agreement", f"{report.agreement:.4f}", f"{report.agreement_ci[0]:.4f}",
                         f"{report.agreement_ci[1]:.4f}", report.cells],
                        ["summary", "cohen_kappa", f"{report.kappa:.4f}", "", "", report.cells],
                        ["summary", "card_accuracy", "" if report.card_accuracy is None else f"{report.card_accuracy:.4f}",
                         "", "", ""],
                        ["summary", "sessions", report.sessions, "", "", ""],
                        ["summary", "review_rate", f"{report.review_rate:.4f}", "", "", report.cells],
                        ["summary", "unfamiliar_rate", f"{report.unfamiliar_rate:.4f}", "", "", report.cells]]
    for c in report.classes:
        rows.append(["sensitivity", c.key, f"{c.sensitivity:.4f}", f"{c.sensitivity_ci[0]:.4f}",
                     f"{c.sensitivity_ci[1]:.4f}", c.n_final])
        rows.append(["ppv", c.key, f"{c.ppv:.4f}", f"{c.ppv_ci[0]:.4f}", f"{c.ppv_ci[1]:.4f}", c.n_ai])
    for i, ai in enumerate(report.class_keys):
        for j, final in enumerate(report.class_keys):
            rows.append(["confusion", f"ai={ai};final={final}", int(report.confusion[i, j]), "", "", ""])
    for s in report.per_session:
        for k in report.class_keys:
            if s.ai[k] is not None:
                rows.append(["session", f"{s.name};{k};ai", _num(s.ai[k]), "", "", s.cells])
                rows.append(["session", f"{s.name};{k};final", _num(s.final[k]), "", "", s.cells])
    for lim in report.limits:
        rows.append(["bland_altman", f"{lim.key};bias", _num(lim.bias), _num(lim.lower), _num(lim.upper), lim.sessions])
    return rows


def report_html(report: VerificationReport) -> str:
    e = html.escape
    colour = {True: "#166534", False: "#b00020", None: "#b45309"}[report.verified]
    parts = [f"<h2>Verification report — {e(report.model)}</h2>",
             f"<p style='color:{colour}'><b>{e(report.verdict)}</b></p>",
             f"<p>{report.sessions} signed-off session(s), {report.cells} cells; Cohen's κ {report.kappa:.3f}; "
             f"{report.corrected} calls changed by the technicians; Review rate {_pct(report.review_rate)}, "
             f"Unfamiliar rate {_pct(report.unfamiliar_rate)}.</p>"]
    rows = "".join(
        f"<tr><td>{e(c.label)}</td><td align=right>{c.n_final}</td><td align=right>{c.n_ai}</td>"
        f"<td align=right>{_pct(c.sensitivity)}</td><td>{_pct(c.sensitivity_ci[0])}–{_pct(c.sensitivity_ci[1])}</td>"
        f"<td align=right>{_pct(c.ppv)}</td><td>{_pct(c.ppv_ci[0])}–{_pct(c.ppv_ci[1])}</td></tr>" for c in report.classes)
    parts.append("<h3>Per class (final call = technician)</h3><table border=1 cellspacing=0 cellpadding=3>"
                 "<tr><th>Class</th><th>Final</th><th>AI</th><th>Sensitivity</th><th>95% CI</th><th>PPV</th>"
                 f"<th>95% CI</th></tr>{rows}</table>")
    label = {c.key: c.label for c in report.classes}
    head = "".join(f"<th>{e(label.get(k, k))}</th>" for k in report.class_keys)
    body = "".join(f"<tr><th>{e(label.get(k, k))}</th>"
                   + "".join(f"<td align=right>{v}</td>" for v in report.confusion[i]) + "</tr>"
                   for i, k in enumerate(report.class_keys))
    parts.append(f"<h3>Confusion (rows: AI call, columns: final call)</h3><table border=1 cellspacing=0 cellpadding=3>"
                 f"<tr><th></th>{head}</tr>{body}</table>")
    if report.limits:
        rows = "".join(f"<tr><td>{e(lim.label)}</td><td align=right>{lim.sessions}</td><td align=right>{_num(lim.bias)}</td>"
                       f"<td align=right>{_num(lim.lower)}</td><td align=right>{_num(lim.upper)}</td></tr>"
                       for lim in report.limits)
        parts.append("<h3>Differential, AI − final, per session (percentage points)</h3>"
                     "<table border=1 cellspacing=0 cellpadding=3><tr><th>Class</th><th>Sessions</th><th>Mean bias</th>"
                     f"<th>Lower limit</th><th>Upper limit</th></tr>{rows}</table>")
    parts += [f"<p style='font-size:9pt'>{e(c)}</p>" for c in report.caveats]
    return "".join(parts)


def report_text(report: VerificationReport) -> str:
    lines = [f"Verification: {report.model}", report.verdict,
             f"{report.sessions} session(s), {report.cells} cells, kappa {report.kappa:.3f}, review rate "
             f"{_pct(report.review_rate)}, unfamiliar rate {_pct(report.unfamiliar_rate)}",
             f"{'class':<24} {'final':>6} {'AI':>6} {'sens':>7} {'95% CI':>15} {'PPV':>7} {'95% CI':>15}"]
    for c in report.classes:
        lines.append(f"{c.label:<24} {c.n_final:>6} {c.n_ai:>6} {_pct(c.sensitivity):>7} "
                     f"{_pct(c.sensitivity_ci[0]) + '–' + _pct(c.sensitivity_ci[1]):>15} {_pct(c.ppv):>7} "
                     f"{_pct(c.ppv_ci[0]) + '–' + _pct(c.ppv_ci[1]):>15}")
    for lim in report.limits:
        lines.append(f"  {lim.label:<22} AI−final bias {_num(lim.bias)} points, limits {_num(lim.lower)} to "
                     f"{_num(lim.upper)} ({lim.sessions} sessions)")
    return "\n".join(lines + report.caveats)

"""The assertions shared by the timm and Hugging Face coverage matrices (issue 20).

One test file per part of the matrix (``test_zoo_timm_cnn.py``, ``test_zoo_timm_attention.py``,
``test_zoo_hf.py``, so that pytest-xdist spreads them) builds each model once and measures it
once per preset (:func:`zoo_external.measure`); the checks below read those reports. Nothing
may crash, leave a model modified, or lose relevance beyond the guard's tolerance without a
``ConservationWarning``; at most :data:`MAX_REFUSED` of a matrix may be refused.
"""

from __future__ import annotations

import math

from zoo_external import TOL, Report

from clrp_widgets.engine.guard import TOLERANCE

#: the share of a matrix's models that may be refused (with a clear CLRPError)
MAX_REFUSED = 0.05


def check_conservative(report: Report, approximate: dict[str, float]) -> None:
    """The paper preset: exact to :data:`~zoo_external.TOL`, or within the model's documented
    figure in ``approximate`` (z+'s stabiliser); never a silent loss above the guard's
    tolerance."""
    assert report.model_unchanged, "the explanation left the model modified"
    assert report.status not in ("crash", "refused"), report.why
    assert math.isfinite(report.conservation_error), report.why
    if report.conservation_error > TOLERANCE:
        assert report.warnings, f"lost {report.conservation_error:.1e} without a warning"
    allowed = approximate.get(report.name, TOL)
    assert report.conservation_error <= allowed, report.why
    assert report.warnings == [], report.warnings[0]
    if report.name not in approximate:
        assert report.status == "exact", report.why


def check_attnlrp(report: Report) -> None:
    """AttnLRP (not conservative): maps finite, not zero and class-specific."""
    assert report.model_unchanged, "the explanation left the model modified"
    assert report.status == "explained", report.why


def check_refusals(refused: dict[str, str], matrix: int) -> None:
    """Documented refusals (name -> reason) stay within :data:`MAX_REFUSED` of the matrix."""
    assert len(refused) <= MAX_REFUSED * matrix, sorted(refused)

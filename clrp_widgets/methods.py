"""The one registry of explanation methods: names, kinds, labels, and which need a class B.

Every part imports its lists from here (the engine's contrasts and baselines, the metrics, the
data-set jobs and the Explorer's picker), so a method is added in one place. Pure Python, no
torch: the command lines answer ``--help`` before any heavy import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One explanation method.

    Attributes
    ----------
    name : str
        Its name in every API (``contrast=`` / ``method=``).
    kind : str
        ``"relevance"`` (an LRP-family seed: layer relevance, neurons, conditional maps) or
        ``"baseline"`` (an input map only).
    label : str
        What the Explorer's picker shows.
    tip : str
        A one-line description (tooltips), empty where the label says it all.
    needs_class_b : bool
        Whether it contrasts with a second class (``"pairwise"``: an int class index in the
        engine).
    """

    name: str
    kind: str
    label: str
    tip: str = ""
    needs_class_b: bool = False


REGISTRY: tuple[Method, ...] = (
    Method("lrp", "relevance", "LRP", "LRP: relevance of the target class alone (kind 'target')"),
    Method(
        "clrp1",
        "relevance",
        "CLRP1 (rather than all other classes)",
        "CLRP1: target relevance minus the relevance of all other classes together",
    ),
    Method(
        "clrp2",
        "relevance",
        "CLRP2 (rather than not the class)",
        "CLRP2: target relevance minus the relevance of 'not the target class'",
    ),
    Method(
        "sglrp",
        "relevance",
        "SGLRP",
        "SGLRP: target minus the other classes weighted by their softmax probability",
    ),
    Method(
        "pairwise",
        "relevance",
        "rather than class B",
        "target relevance minus the relevance of class B",
        needs_class_b=True,
    ),
    Method("gradient", "baseline", "gradient"),
    Method("gradient_x_input", "baseline", "gradient × input"),
    Method("deconvnet", "baseline", "DeConvNet"),
    Method("guided_backprop", "baseline", "Guided BP"),
    Method("gradcam", "baseline", "Grad-CAM"),
)
BY_NAME = {m.name: m for m in REGISTRY}

#: the engine's named contrasts (``"pairwise"`` is an int class index there)
CONTRASTS = tuple(m.name for m in REGISTRY if m.kind == "relevance" and not m.needs_class_b)
#: every LRP-family method, pairwise included (the Explorer's view)
RELEVANCE = tuple(m.name for m in REGISTRY if m.kind == "relevance")
#: the gradient-based comparison maps
BASELINES = tuple(m.name for m in REGISTRY if m.kind == "baseline")

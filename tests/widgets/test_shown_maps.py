"""The Explorer shows exactly what the engine computes (issue 21).

For every contrast and baseline of the picker and for a conv and a linear layer, each thing on
screen equals the Explainer's own call for the same view, computed here independently of the
widget's session: the header's decision map (``explain`` / ``baseline``), the neuron bars
(``neuron_relevance`` of ``explain``), one selected neuron's map (``conditional``) and two
compared neurons with their difference. A widget that showed another contrast's map (SGLRP's
view with CLRP1's map, say) fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_explorer import shown
from widget_messages import bar_click

from clrp_widgets import methods
from clrp_widgets.widgets.explorer import Explorer

LAYERS = ["features.3", "classifier.1"]  # a conv layer and a linear layer
CLASS_B = 2


def engine_contrast(contrast: str) -> str | int:
    """The Explainer's contrast for a picker entry; the neuron panel of a baseline is CLRP1."""
    if contrast == "pairwise":
        return CLASS_B
    return contrast if contrast in methods.RELEVANCE else "clrp1"


def close(got: np.ndarray, want: np.ndarray) -> None:
    want = np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(np.abs(want).max() or 1))


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("contrast", [m.name for m in methods.REGISTRY])
def test_everything_on_screen_equals_the_explainers_own_result(explainer, image, contrast, layer):
    ex = Explorer(explainer, image, layer=layer).wait()
    target = (ex.target + 1) % 5 if ex.target == CLASS_B else ex.target
    ex.select(contrast=contrast, layer=layer, target=target, class_b=CLASS_B)
    assert ex.error == "" and ex.contrast == contrast and ex.layer == layer
    panel = engine_contrast(contrast)
    kind = "target" if panel == "lrp" else "contrast"
    tree = explainer.explain(image, target, contrast=panel, layers=[layer])

    # the header's decision map
    if methods.BY_NAME[contrast].kind == "baseline":
        want = explainer.baseline(image, target, contrast).values[0]
    else:
        want = tree["input"]["heatmap"].sel(kind=kind).values[0]
    close(shown(ex.heatmap)[0], want)

    # the neuron bars: the shown channels' relevance, every kind
    rel = tree["layers"][layer]["neuron_relevance"].isel(sample=0)
    channels = list(ex.bars.channels)
    assert channels, "no bars"
    kinds = list(rel["kind"].values)
    bars = np.asarray(ex.bars.bars.y, dtype=np.float64).reshape(len(kinds), -1)
    for row, k in zip(bars, kinds, strict=True):
        close(row, rel.sel(kind=k).values[channels])
    top = np.argsort(-rel.sel(kind=kind).values, kind="stable")[: len(channels)]
    assert set(channels[:3]) <= set(top.tolist())  # the strongest channels are shown

    # one neuron: its conditional map
    a, b = channels[0], channels[1]
    bar_click(ex.bars.bars, 0)
    ex.wait()
    cond = explainer.conditional(image, target, layer, [a, b], contrast=panel)
    map_a, map_b = cond.sel(channel=a).values[0], cond.sel(channel=b).values[0]
    assert ex.channels == [a]
    close(shown(ex.neuron_view)[0], map_a)

    # two neurons compared, and their difference
    bar_click(ex.bars.bars, 1)
    ex.wait()
    assert ex.channels == [a, b]
    on_screen = shown(ex.neuron_view)
    close(on_screen[0], map_a)
    close(on_screen[1], map_b)
    close(on_screen[2], map_a - map_b)

"""A contrast-only request followed by the three kinds on the same input costs one more pass."""

from __future__ import annotations

import pytest
import torch
from engine_nets import make_cnn, make_input

from clrp_widgets.engine import RelevanceEngine

BOUNDS = (0.0, 1.0)
ALL = ("target", "dual", "contrast")


def _counting(engine: RelevanceEngine) -> list[int]:
    calls = [0]
    inner = engine._class_backprop

    def counted(*args, **kwargs):
        calls[0] += 1
        return inner(*args, **kwargs)

    engine._class_backprop = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("contrast", ["clrp1", "clrp2", "sglrp", 4])
def test_three_kinds_after_the_contrast_take_one_pass_and_equal_a_fresh_run(contrast) -> None:
    model, x = make_cnn(), make_input()
    engine = RelevanceEngine(model, input_bounds=BOUNDS)
    calls = _counting(engine)
    first = engine.run(x, 1, contrast, kinds=("contrast",), capture="all")
    assert calls[0] == 1
    both = engine.run(x, 1, contrast, kinds=ALL, capture="all")
    assert calls[0] == 2  # the target's pass only: dual = target - contrast
    fresh = RelevanceEngine(make_cnn(), input_bounds=BOUNDS).run(
        x, 1, contrast, kinds=ALL, capture="all"
    )
    torch.testing.assert_close(both.input, fresh.input, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(both.seed_sums, fresh.seed_sums)
    for name, layer in fresh.layers.items():
        torch.testing.assert_close(
            both.layers[name].relevance, layer.relevance, rtol=1e-5, atol=1e-7
        )
    torch.testing.assert_close(both.input[2], first.input[0], rtol=0, atol=0)
    first.input.zero_()  # results never alias what the engine kept
    again = engine.run(x, 1, contrast, kinds=ALL, capture="all")
    torch.testing.assert_close(again.input, both.input, rtol=0, atol=0)


def test_another_target_or_layer_set_is_not_taken_from_the_kept_contrast() -> None:
    model, x = make_cnn(), make_input()
    engine = RelevanceEngine(model, input_bounds=BOUNDS)
    calls = _counting(engine)
    engine.run(x, 1, kinds=("contrast",))
    engine.run(x, 2, kinds=ALL)
    assert calls[0] == 3
    engine.run(x, 2, kinds=("contrast",))
    engine.run(x, 2, kinds=ALL, capture="all")
    assert calls[0] == 6
    engine.run(x, 2, kinds=("contrast",))  # the same request again: no pass at all
    assert calls[0] == 6
    engine.run(x, 2, "clrp2", kinds=ALL)
    assert calls[0] == 8
    engine.run(make_input(seed=5), 2, kinds=ALL)  # another input: a new forward pass
    assert calls[0] == 10

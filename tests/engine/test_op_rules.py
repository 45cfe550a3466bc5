"""Op-level rules on examples small enough to compute on paper (float64, paper preset).

Every model reads x = [1, 2] (bounds (-1, 3)) with Linear layers of small integer weights and no
bias, so every number below is exact up to the rules' 1e-9 stabilisers. The first layer met in
the forward pass gets z^B; with an identity weight z^B hands each input exactly its unit's
relevance. The logit layer's z+ rule hands each unit y_k of positive weight the share
y_k w_k / Σ y w+ of the logit.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from clrp_widgets.engine import RelevanceEngine

X = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
BOUNDS = (-1.0, 3.0)


def linear(*rows: list[float]) -> nn.Linear:
    layer = nn.Linear(len(rows[0]), len(rows), bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(rows, dtype=torch.float64))
    return layer


def explain(model: nn.Module, layers: list[str]):
    """LRP of logit 0: relevance at the input and at ``layers``, and the logit.

    The engine itself, since the result tree needs image-shaped (N, C, H, W) input.
    """
    out = RelevanceEngine(model.eval(), input_bounds=BOUNDS).run(
        X, 0, contrast="lrp", capture=layers
    )
    at = {name: out.layers[name].relevance[0, 0] for name in layers}
    return out.input[0, 0], at, float(out.logits[0, 0])


def close(got, want) -> None:
    torch.testing.assert_close(
        torch.as_tensor(got), torch.tensor(want, dtype=torch.float64), rtol=1e-8, atol=1e-12
    )


# --------------------------------------------------------------------- gate: signal * sigmoid(g)


class Gated(nn.Module):
    """y = s * sigmoid(g), s = x (identity), g = [2x0 - x1, -2x0 + x1] = [0, 0] on X.

    With the gate held constant: y = s / 2 = [0.5, 1]; logits = [y0 + y1, 2y0 - y1] = [1.5, 0].
    Logit 0, z+: R_y = [0.5, 1] (shares 0.5/1.5 and 1/1.5 of 1.5). All of it goes to the signal:
    R_s = [0.5, 1], R_g = [0, 0]; z^B with identity weight: R_x = [0.5, 1], which sums to 1.5.
    The gradient would give s only half (sigmoid(0) = 0.5) and leak 1/4 of s into g.
    """

    def __init__(self, se: bool = False) -> None:
        super().__init__()
        self.se = se  # squeeze-excitation style: the gate is computed from the signal itself
        self.signal = linear([1, 0], [0, 1])
        self.gate = linear([2, -1], [-2, 1])
        self.out = linear([1, 1], [2, -1])

    def forward(self, x: Tensor) -> Tensor:
        s = self.signal(x)
        return self.out(s * torch.sigmoid(self.gate(s if self.se else x)))


@pytest.mark.parametrize("se", [False, True], ids=["two-branches", "squeeze-excitation"])
def test_gate_gives_all_relevance_to_the_signal(se):
    r_x, at, logit = explain(Gated(se), ["signal", "gate", "out"])
    assert logit == 1.5
    close(at["out"], [1.5, 0.0])
    close(at["signal"], [0.5, 1.0])
    close(at["gate"], [0.0, 0.0])
    close(r_x, [0.5, 1.0])


def test_gate_with_the_gate_first_and_an_nn_sigmoid():
    """``sigmoid(g) * s`` (gate on the left, as an ``nn.Sigmoid`` module) is the same rule."""

    class GateFirst(Gated):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.Sigmoid()

        def forward(self, x: Tensor) -> Tensor:
            s = self.signal(x)
            return self.out(self.act(self.gate(x)) * s)

    r_x, at, _ = explain(GateFirst(), ["signal", "gate"])
    close(at["signal"], [0.5, 1.0])
    close(at["gate"], [0.0, 0.0])
    close(r_x, [0.5, 1.0])


# --------------------------------------------------------------------- add: z-proportional split


class Added(nn.Module):
    """y = a + b with a = x = [1, 2] and b = [2x0, x1] = [2, 2]: y = [3, 4].

    logits = [y0 + y1, y0 - y1] = [7, -1]. Logit 0, z+: R_y = [3, 4]. The z rule splits each
    unit in proportion to its addends: R_a = [1/3 * 3, 2/4 * 4] = [1, 2], R_b = [2, 2].
    z^B (identity) on a: [1, 2]; z+ on b (x > 0, diagonal weight): [2, 2]; R_x = [3, 4] (sum 7).
    The gradient would hand both addends all of R_y: [3, 4] each, 14 in total.
    """

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a = linear([1, 0], [0, 1])
        self.b = linear([2, 0], [0, 1])
        self.out = linear([1, 1], [1, -1])

    def forward(self, x: Tensor) -> Tensor:
        a = self.a(x)
        if self.how == "inplace":
            a += self.b(x)  # the return value of add_ is ignored, as users write it
            return self.out(a)
        if self.how == "torch.add":
            return self.out(torch.add(a, self.b(x)))
        return self.out(a + self.b(x))


@pytest.mark.parametrize("how", ["a + b", "inplace", "torch.add"])
def test_add_splits_in_proportion_to_the_addends(how):
    layers = ["b", "out"] if how == "inplace" else ["a", "b", "out"]  # a is overwritten
    r_x, at, logit = explain(Added(how), layers)
    assert logit == 7.0
    close(at["out"], [7.0, 0.0])
    if "a" in at:
        close(at["a"], [1.0, 2.0])
    close(at["b"], [2.0, 2.0])
    close(r_x, [3.0, 4.0])


class Residual(nn.Module):
    """y = h + f(h), h = x = [1, 2], f(h) = [2h0, h1] = [2, 2]: as :class:`Added`, but b reads h.

    R_y = [3, 4]; skip share R_h = [1, 2], branch R_f = [2, 2], which z+ hands back to h
    unchanged (diagonal): relevance at h = [1, 2] + [2, 2] = [3, 4] = R_x.
    """

    def __init__(self) -> None:
        super().__init__()
        self.h = linear([1, 0], [0, 1])
        self.f = linear([2, 0], [0, 1])
        self.out = linear([1, 1], [1, -1])

    def forward(self, x: Tensor) -> Tensor:
        h = self.h(x)
        return self.out(h + self.f(h))


def test_residual_sum_splits_then_merges_again():
    r_x, at, _ = explain(Residual(), ["h", "f"])
    close(at["f"], [2.0, 2.0])
    close(at["h"], [3.0, 4.0])
    close(r_x, [3.0, 4.0])


def test_the_add_is_a_layer_named_after_its_module():
    """The op node of the root module's add is ``":add"`` and carries R_y = [3, 4]."""
    engine = RelevanceEngine(Added("a + b").eval(), input_bounds=BOUNDS)
    out = engine.run(X, 0, contrast="lrp", capture="all")
    assert ":add" in engine.layer_names() and ":add" in out.layers
    close(out.layers[":add"].relevance[0, 0], [3.0, 4.0])


# --------------------------------------------------------------------- product with a parameter


class Scaled(nn.Module):
    """Layer scale: y = a * gamma with gamma = [2, 3] a parameter: y = [2, 6], logits [8, -4].

    A product with a parameter passes relevance: R_a = R_y = [2, 6] (z+ shares of 8).
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = linear([1, 0], [0, 1])
        self.gamma = nn.Parameter(torch.tensor([2.0, 3.0], dtype=torch.float64))
        self.out = linear([1, 1], [1, -1])

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.a(x) * self.gamma)


def test_product_with_a_parameter_passes():
    r_x, at, logit = explain(Scaled(), ["a"])
    assert logit == 8.0
    close(at["a"], [2.0, 6.0])
    close(r_x, [2.0, 6.0])

"""AttnLRP / CP-LRP op rules against slow references (hand formulas, loops, matrix form).

References: Achtibat et al., "AttnLRP", ICML 2024 (softmax rule, uniform rule, LayerNorm with the
normaliser held constant); Ali et al., "XAI for Transformers: Better Explanations through
Conservative Propagation", ICML 2022 (CP-LRP: attention held constant). Every model is
parameter-free or tiny, float64; maps are the engine's input relevance for LRP of one logit.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine.attention import AffineSum, LayerNormRule, ProductRule
from clrp_widgets.engine.rules import Epsilon
from clrp_widgets.engine.rules import Norm as NormRule

EPS = 1e-6  # the presets' epsilon


def explain(model: nn.Module, x: Tensor, target: int, rules: str = "attnlrp") -> Tensor:
    out = RelevanceEngine(model.eval(), rules=rules, input_bounds=(-10, 10)).run(
        x, target, contrast="lrp"
    )
    return out.input[0, 0]


def stab(z: float, eps: float = EPS) -> float:
    return z + (-eps if z < 0 else eps)


class SoftmaxOut(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(x.flatten(1), dim=-1)


def test_softmax_rule_by_hand() -> None:
    x = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64).reshape(1, 1, 1, 3)
    e = [math.exp(v) for v in (1.0, 2.0, 0.5)]
    s = [v / sum(e) for v in e]
    # LRP of output 1: R_out = (0, s1, 0); R_in = x * (R_out - s * sum(R_out))
    expected = [1.0 * (0 - s[0] * s[1]), 2.0 * (s[1] - s[1] * s[1]), 0.5 * (0 - s[2] * s[1])]
    got = explain(SoftmaxOut(), x, 1).flatten()
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


class Bilinear(nn.Module):
    """(a @ b) for a = x[:, 0], b = x[:, 1], each (2, 2): four logits."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(x[:, 0], x[:, 1]).flatten(1)


def _uniform_reference(
    a: Tensor, b: Tensor, target: int, eps: float = EPS
) -> tuple[Tensor, Tensor]:
    """Loops: R_a[i,k] = 1/2 sum_j a_ik b_kj R_ij / z_ij and R_b[k,j] = 1/2 sum_i (same)."""
    z = a @ b
    R = torch.zeros_like(z)
    R.view(-1)[target] = z.view(-1)[target]
    ra, rb = torch.zeros_like(a), torch.zeros_like(b)
    for i in range(2):
        for j in range(2):
            for k in range(2):
                share = a[i, k] * b[k, j] * R[i, j] / stab(float(z[i, j]), eps)
                ra[i, k] += share / 2
                rb[k, j] += share / 2
    return ra, rb


@pytest.mark.parametrize("target", [0, 3])
def test_uniform_product_rule_loops(target: int) -> None:
    x = torch.tensor([[[[1.0, 2.0], [-0.5, 3.0]], [[0.7, -1.0], [2.0, 0.25]]]], dtype=torch.float64)
    ra, rb = _uniform_reference(x[0, 0], x[0, 1], target)
    got = RelevanceEngine(Bilinear().eval(), rules="attnlrp", input_bounds=(-10, 10)).run(
        x, target, contrast="lrp"
    )
    torch.testing.assert_close(got.input[0, 0, 0], ra, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.input[0, 0, 1], rb, rtol=0, atol=1e-12)
    # each operand's epsilon rule conserves a product of activations: half the logit each
    logit = float(got.logits[0, target])
    assert float(ra.sum()) == pytest.approx(logit / 2, rel=1e-6)
    assert float(rb.sum()) == pytest.approx(logit / 2, rel=1e-6)


class Attention(nn.Module):
    """out = softmax(q) @ v with q = x[:, 0], v = x[:, 1] (2 x 2 each)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(torch.softmax(x[:, 0], dim=-1), x[:, 1]).flatten(1)


def _attention_reference(q: Tensor, v: Tensor, target: int, cp: bool) -> tuple[Tensor, Tensor]:
    """Matrix form: out = A v, A = softmax(q) row-wise."""
    A = torch.softmax(q, dim=-1)
    z = A @ v
    R = torch.zeros_like(z)
    R.view(-1)[target] = z.view(-1)[target]
    S = R / z.apply_(stab)  # R / stabilize(z)
    share = 1.0 if cp else 0.5
    rv = share * v * (A.T @ S)  # z rule of the linear map v -> A v
    if cp:
        return torch.zeros_like(q), rv
    RA = 0.5 * A * (S @ v.T)
    rq = q * (RA - A * RA.sum(-1, keepdim=True))
    return rq, rv


@pytest.mark.parametrize("rules", ["attnlrp", "cp_lrp"])
@pytest.mark.parametrize("target", [1, 2])
def test_attention_softmax_then_product(rules: str, target: int) -> None:
    x = torch.tensor([[[[0.3, -1.2], [2.0, 0.1]], [[1.5, -0.4], [0.6, 2.2]]]], dtype=torch.float64)
    rq, rv = _attention_reference(x[0, 0], x[0, 1].clone(), target, cp=rules == "cp_lrp")
    got = RelevanceEngine(Attention().eval(), rules=rules, input_bounds=(-10, 10)).run(
        x, target, contrast="lrp"
    )
    torch.testing.assert_close(got.input[0, 0, 0], rq, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.input[0, 0, 1], rv, rtol=0, atol=1e-12)


class Norm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(4).double()
        with torch.no_grad():
            self.ln.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 1.5]))
            self.ln.bias.copy_(torch.tensor([0.1, 0.0, -0.3, 0.2]))

    def forward(self, x: Tensor) -> Tensor:
        return self.ln(x.flatten(1))


def test_layer_norm_normaliser_constant_matrix_form() -> None:
    x = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    model = Norm()
    w, b, n = model.ln.weight.detach(), model.ln.bias.detach(), 4
    std = float(((x - x.mean()) ** 2).mean().add(model.ln.eps).sqrt())
    J = (torch.eye(n, dtype=torch.float64) - 1.0 / n) / std * w[:, None]  # dy_j/dx_i, std fixed
    y = J @ x + b
    target = 2
    R = torch.zeros(n, dtype=torch.float64)
    R[target] = y[target]
    expected = x * (J.T @ (R / y.apply_(stab)))
    got = explain(model, x.reshape(1, 1, 1, 4), target).flatten()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


class PlusConstant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor([[0.5, -3.0, 1.0]], dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) + self.c


def test_additive_constant_absorbs_its_share() -> None:
    x = torch.tensor([2.0, 1.0, -0.5], dtype=torch.float64).reshape(1, 1, 1, 3)
    # logit 1 = 1 + (-3) = -2: x holds 1 / -2 of it, the constant the rest
    got = explain(PlusConstant(), x, 1).flatten()
    assert float(got[1]) == pytest.approx(1.0 / stab(-2.0) * -2.0, abs=1e-12)
    assert float(got[0]) == 0 and float(got[2]) == 0


class TwoSums(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return (x[:, 0] + x[:, 1]).flatten(1)


def test_residual_sum_splits_in_proportion() -> None:
    x = torch.tensor([[[[1.0, 4.0]], [[3.0, -2.0]]]], dtype=torch.float64)
    got = explain(TwoSums(), x, 0)
    assert float(got[0, 0, 0]) == pytest.approx(1.0, abs=1e-6)
    assert float(got[1, 0, 0]) == pytest.approx(3.0, abs=1e-6)


@pytest.mark.parametrize("target", [0, 3])
def test_paper_preset_gives_a_product_the_uniform_rule(target: int) -> None:
    """Under "paper", a product of two signals (QK^T, no gate) takes the uniform rule too:
    the same maps as the loop reference, and conservative (the two halves sum to the logit)."""
    a = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    b = torch.tensor([[2.0, 1.0], [3.0, 0.5]], dtype=torch.float64)
    x = torch.stack([a, b])[None]
    out = RelevanceEngine(Bilinear().eval(), input_bounds=(-10, 10)).run(x, target, "lrp")
    ra, rb = _uniform_reference(a, b, target, eps=1e-9)  # the paper preset's stabiliser
    torch.testing.assert_close(out.input[0, 0, 0], ra, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.input[0, 0, 1], rb, atol=1e-12, rtol=0)
    assert float(out.input.sum()) == pytest.approx(float((a @ b).view(-1)[target]), rel=1e-8)


class BiasFreeTransformer(nn.Module):
    """One pre-norm transformer block without any bias, shift or additive constant."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, 4, bias=False)
        self.ln_1 = nn.LayerNorm(8, bias=False)
        self.attn = nn.MultiheadAttention(8, 2, bias=False, batch_first=True)
        self.ln_2 = nn.LayerNorm(8, bias=False)
        self.fc1 = nn.Linear(8, 16, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(16, 8, bias=False)
        self.head = nn.Linear(8, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        h = self.ln_1(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        t = t + self.fc2(self.act(self.fc1(self.ln_2(t))))
        return self.head(t.mean(1))


def test_cp_lrp_conserves_where_nothing_absorbs() -> None:
    """What "not conservative" means: with no bias, shift or constant anywhere, CP-LRP's rules
    (z^B, epsilon, LayerNorm, AV with the attention constant, sums) hand the whole logit to the
    input; AttnLRP's softmax rule drops its Taylor bias term, so its input sum differs."""
    torch.manual_seed(0)
    model = BiasFreeTransformer().double().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    sums = {}
    tiny = 1e-12  # the stabilisers (1e-6 in the presets) shift sums by ~1e-5 of a logit here
    overrides = {
        nn.Linear: Epsilon(tiny),
        torch.matmul: ProductRule(tiny),
        torch.add: AffineSum(tiny),
        torch.layer_norm: LayerNormRule(tiny),
        torch.mean: NormRule(eps=tiny),
    }
    for rules in ("cp_lrp", "attnlrp"):
        engine = RelevanceEngine(model, rules=rules, input_bounds=(0, 1), overrides=overrides)
        out = engine.run(x, 1, contrast="lrp")
        sums[rules] = out.input[0].flatten(1).sum(1)
        logit = out.logits[:, 1]
    torch.testing.assert_close(sums["cp_lrp"], logit, rtol=1e-8, atol=0)
    assert float((sums["attnlrp"] - logit).abs().max()) > 1e-3 * float(logit.abs().max())

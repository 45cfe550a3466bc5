"""Vision transformers on the op-level engine: torchvision vit_b_16, swin_t, maxvit_t (random
weights, float64, small images), the AttnLRP / CP-LRP presets, every method, model safety, and a
Gradient x Input oracle (LXT's formulation, written out here) for a small ViT."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from tiny_vit import tiny_vit
from torch import Tensor, nn
from torchvision.models.maxvit import MaxVit

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine.attention import AffineSum, LayerNormRule, ProductRule
from clrp_widgets.engine.errors import ConfigError, UnsupportedLayerError
from clrp_widgets.engine.rules import Epsilon, ZPlus

METHODS = ("lrp", "clrp1", "clrp2", "sglrp", "pairwise")


def _vit() -> tuple[nn.Module, int]:
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(image_size=32).double().eval()
    nn.init.normal_(model.heads.head.weight, std=0.05)  # torchvision zeroes the head
    return model, 32


def _swin() -> tuple[nn.Module, int]:
    torch.manual_seed(0)
    return torchvision.models.swin_t().double().eval(), 32


def _maxvit_small() -> tuple[nn.Module, int]:
    """torchvision's MaxVit class (maxvit_t's blocks) at 32 px: partition 2, two stages."""
    torch.manual_seed(0)
    model = MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=2,
        block_channels=[8, 16],
        block_layers=[1, 1],
        head_dim=4,
        stochastic_depth_prob=0.0,
        num_classes=10,
    )
    return model.double().eval(), 32


BUILDERS = {"vit_b_16": _vit, "swin_t": _swin, "maxvit": _maxvit_small}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("vit_b_16", marks=pytest.mark.slow),  # 86M parameters in float64
        pytest.param("swin_t", marks=pytest.mark.slow),
        "maxvit",
    ],
)
def case(request: pytest.FixtureRequest):
    model, size = BUILDERS[request.param]()
    torch.manual_seed(1)
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    return request.param, model, x


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def _assert_untouched(model: nn.Module, before: dict[str, Tensor]) -> None:
    after = model.state_dict(keep_vars=True)
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k].detach()), k
        assert not after[k].requires_grad or isinstance(after[k], nn.Parameter)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        assert not m.training
    assert torch._C._len_torch_function_stack() == 0


def _contrast(method: str, logits: Tensor) -> str | int:
    if method == "pairwise":
        return int(logits[0].argsort(descending=True)[1])
    return method


@pytest.mark.parametrize("rules", ["attnlrp", "cp_lrp"])
def test_every_method_gives_finite_nonzero_maps(case, rules: str) -> None:
    name, model, x = case
    before = _snapshot(model)
    engine = RelevanceEngine(model, rules=rules, input_bounds=(0, 1))
    logits = engine.logits(x)
    target = logits.argmax(1).tolist()  # SGLRP's seed vanishes for classes of tiny probability
    scale = float(engine.run(x, target, contrast="lrp").input.abs().amax())
    assert scale > 0
    for method in METHODS:
        contrast = _contrast(method, logits)
        if method == "pairwise" and contrast in target:
            contrast = int(logits[0].argsort(descending=True)[2])
        if method == "clrp2":  # the epsilon rule on the logits is sign-symmetric: refused
            with pytest.raises(ConfigError, match="identically zero"):
                engine.run(x, target, contrast="clrp2")
            continue
        out = engine.run(x, target, contrast=contrast, kinds=None)
        assert bool(torch.isfinite(out.input).all()), (name, method)
        assert float(out.input.abs().amax()) > 1e-6 * scale, (name, method)
    _assert_untouched(model, before)


def test_clrp2_with_z_plus_on_the_logit_layer() -> None:
    model, size = _maxvit_small()
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    before = _snapshot(model)
    engine = RelevanceEngine(
        model, rules="attnlrp", input_bounds=(0, 1), overrides={"classifier.5": ZPlus()}
    )
    lrp = engine.run(x, 1, contrast="lrp").input
    out = engine.run(x, 1, contrast="clrp2", kinds=("target", "dual", "contrast"))
    torch.testing.assert_close(out.input[0], lrp[0])
    assert float(out.input[2].abs().amax()) > 1e-3 * float(lrp.abs().amax())
    _assert_untouched(model, before)


def test_result_tree_labels_blocks_attention_and_mlp(case) -> None:
    name, model, x = case
    ex = cw.Explainer(model, rules="attnlrp", input_bounds=(0, 1))
    tree = ex.explain(x[:1], 0, contrast="clrp1", layers="all")
    layers = set(tree["layers"].children)
    if name == "vit_b_16":
        for i in range(12):
            block = f"encoder.layers.encoder_layer_{i}"
            attn = f"{block}.self_attention"
            expected = {
                f"{attn}:linear",  # q, k, v projection
                f"{attn}:matmul",  # q k^T
                f"{attn}:softmax",  # the attention map (N, heads, queries, keys)
                f"{attn}:matmul.1",  # attention x v
                f"{attn}:linear.1",  # output projection
                f"{block}:add",  # residual around attention
                f"{block}.mlp.0",
                f"{block}.mlp.3",
                f"{block}:add.1",  # residual around the MLP
            }
            assert expected <= layers, expected - layers
        heads = tree["layers"][f"{attn}:softmax"].ds.relevance
        assert heads.sizes["channel"] == 12  # the heads are the channels of an attention map
    elif name == "swin_t":
        for stage, depth in ((1, 2), (3, 2), (5, 6), (7, 2)):
            for j in range(depth):
                block = f"features.{stage}.{j}"
                assert f"{block}.mlp.0" in layers and f"{block}.mlp.3" in layers
                assert f"{block}:add" in layers and f"{block}:add.1" in layers
        # windowed attention internals ((N * windows, ...) tensors) are not per-sample layers
        assert "features.7.0.attn:softmax" in layers  # the last stage has one window
    else:
        for block in ("blocks.0.layers.0.layers", "blocks.1.layers.0.layers"):
            for part in ("window_attention", "grid_attention"):
                attn = f"{block}.{part}.attn_layer.1"
                assert {f"{attn}:einsum", f"{attn}:softmax", f"{attn}:einsum.1"} <= layers
                assert f"{block}.{part}.mlp_layer.1" in layers
    for node in tree["layers"].children.values():
        assert bool(node.ds.relevance.notnull().all())


@pytest.mark.slow
def test_maxvit_t_at_its_own_size() -> None:
    """torchvision's maxvit_t itself (224 px: its partitions need it), float32, both presets."""
    torch.manual_seed(0)
    model = torchvision.models.maxvit_t().eval()
    before = _snapshot(model)
    x = torch.rand(1, 3, 224, 224)
    for rules in ("attnlrp", "cp_lrp"):
        engine = RelevanceEngine(model, rules=rules, input_bounds=(0, 1))
        target = int(engine.logits(x).argmax())
        maps = [engine.run(x, target, contrast=c).input for c in ("lrp", "clrp1", "sglrp")]
        scale = float(maps[0].abs().amax())
        assert scale > 0
        for m in maps:
            assert bool(torch.isfinite(m).all()) and float(m.abs().amax()) > 1e-6 * scale
        names = engine.layer_names()
        assert "blocks.3.layers.1.layers.grid_attention.attn_layer.1:einsum.1" in names
    _assert_untouched(model, before)


def test_maxvit_window_partition_takes_two_inputs() -> None:
    model, size = _maxvit_small()
    x = torch.rand(1, 3, size, size, dtype=torch.float64)
    out = RelevanceEngine(model, rules="cp_lrp", input_bounds=(0, 1)).run(x, 0, contrast="lrp")
    assert float(out.input.abs().amax()) > 0


def test_error_inside_the_forward_pass_leaves_model_and_torch_as_they_were() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 4, 4)
            self.attn = nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x: Tensor) -> Tensor:
            t = self.conv(x).flatten(2).transpose(1, 2)
            return self.head(self.attn(t, t, t, need_weights=False)[0].mean(1))

    model = Net().double().eval()
    before = _snapshot(model)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(UnsupportedLayerError, match="add_bias_kv"):
        RelevanceEngine(model, rules="attnlrp", input_bounds=(0, 1)).run(x, 0)
    _assert_untouched(model, before)
    assert torch.equal(model(x), model(x))  # still runs, no mode or hook left


class MHANet(nn.Module):
    def __init__(self, batch_first: bool, mask: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, 4)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.head = nn.Linear(8, 3)
        self.batch_first, self.mask = batch_first, mask

    def forward(self, x: Tensor) -> Tensor:
        t = self.conv(x).flatten(2).transpose(1, 2)  # (N, 4, 8)
        t = t if self.batch_first else t.transpose(0, 1)
        mask = None
        if self.mask == "bool":
            mask = torch.tensor([[False, True, False, False]] * 4)
        elif self.mask == "float":
            mask = torch.linspace(-1, 1, 16, dtype=t.dtype).reshape(4, 4)
        out, _ = self.attn(t, t, t, attn_mask=mask)  # need_weights=True (the default)
        out = out if self.batch_first else out.transpose(0, 1)
        return self.head(out.mean(1))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", [None, "bool", "float"])
def test_decomposed_attention_computes_the_same_logits(batch_first: bool, mask: str | None):
    torch.manual_seed(0)
    model = MHANet(batch_first, mask).double().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    engine = RelevanceEngine(model, rules="attnlrp", input_bounds=(0, 1))
    torch.testing.assert_close(engine.logits(x), model(x), rtol=1e-12, atol=1e-12)
    out = engine.run(x, 1, contrast="clrp1")
    assert bool(torch.isfinite(out.input).all()) and float(out.input.abs().amax()) > 0


# ---------------------------------------------------------------- Gradient x Input oracle
class _Scale(torch.autograd.Function):
    """Identity forward; gradient divided by ``factor`` (LXT's ``divide_gradient``)."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:
        return g / ctx.factor, None


class _Identity(torch.autograd.Function):
    """``fn(x)`` forward; gradient ``fn(x) / x`` (the identity rule in Gradient x Input form)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = nn.functional.gelu(x)
        ctx.save_for_backward(y / x)
        return y

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        return ctx.saved_tensors[0] * g


def _ln(x: Tensor, ln: nn.LayerNorm) -> Tensor:
    centred = x - x.mean(-1, keepdim=True)
    std = (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt().detach()
    return centred / std * ln.weight + ln.bias


def _oracle(model: nn.Module, x: Tensor, target: int, cp: bool) -> Tensor:
    """AttnLRP / CP-LRP as Gradient x Input with modified gradients, written out for
    torchvision's VisionTransformer (the formulation of LXT, Achtibat et al. 2024)."""
    x = x.clone().requires_grad_(True)
    n = x.shape[0]
    t = model.conv_proj(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.class_token.expand(n, -1, -1), t], dim=1) + model.encoder.pos_embedding
    for block in model.encoder.layers:
        a = block.self_attention
        h = _ln(t, block.ln_1)
        q, k, v = nn.functional.linear(h, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)
        heads, d = a.num_heads, q.shape[-1] // a.num_heads

        def split(u: Tensor, heads: int = heads, d: int = d) -> Tensor:
            return u.reshape(n, -1, heads, d).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        if cp:
            q, k = q.detach(), k.detach()
        else:
            q, k, v = _Scale.apply(q, 4.0), _Scale.apply(k, 4.0), _Scale.apply(v, 2.0)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1) @ v
        att = att.transpose(1, 2).reshape(n, -1, heads * d)
        t = t + a.out_proj(att)
        h = _ln(t, block.ln_2)
        h = block.mlp[3](_Identity.apply(block.mlp[0](h)))
        t = t + h
    logits = model.heads(_ln(t, model.encoder.ln)[:, 0])
    logits[:, target].sum().backward()
    assert x.grad is not None
    return (x * x.grad).detach()


@pytest.mark.parametrize("rules", ["attnlrp", "cp_lrp"])
def test_small_vit_matches_gradient_times_input_oracle(rules: str) -> None:
    model = tiny_vit(image_size=16, patch_size=4, num_heads=2, hidden_dim=16).double().eval()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    expected = _oracle(model, x, 3, cp=rules == "cp_lrp")
    engine = RelevanceEngine(model, rules=rules, input_bounds=(0, 1), overrides=gxi_overrides())
    got = engine.run(x, 3, contrast="lrp").input[0]
    scale = float(expected.abs().amax())
    assert scale > 0
    # the oracle has no stabiliser; with eps = 1e-12 the maps agree to ~2e-9 (eps 1e-6: 2e-3)
    assert float((got - expected).abs().amax()) <= 1e-6 * scale


def gxi_overrides(eps: float = 1e-12) -> dict:
    """The preset with LXT's choices: plain Gradient x Input on the patch embedding (the
    epsilon rule, not z^B) and (almost) no stabiliser anywhere."""
    return {
        "conv_proj": Epsilon(eps),
        nn.Linear: Epsilon(eps),
        torch.matmul: ProductRule(eps),
        torch.add: AffineSum(eps),
        torch.layer_norm: LayerNormRule(eps),
    }

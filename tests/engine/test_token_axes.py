"""Neuron axes of token and channels-last layers (engine/axes.py): the result tree's ``channel``
is the hidden unit or head, never the token; conditional maps select that axis (checked against
a Gradient x Input oracle for a tiny ViT and against conservation for a channels-last net)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from test_vit import _Identity, _ln, _Scale, gxi_overrides
from tiny_vit import tiny_vit
from torch import Tensor, nn

import clrp_widgets as cw
from clrp_widgets.engine.rules import Epsilon

BLOCK = "encoder.layers.encoder_layer_1"
MLP0 = f"{BLOCK}.mlp.0"


class SwinLike(nn.Module):
    """Patch embedding, then a channels-last (N, H, W, C) residual MLP block, then pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(8, 16, bias=False), nn.ReLU(), nn.Linear(16, 8, bias=False)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 5, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        t = self.embed(x).permute(0, 2, 3, 1)
        t = t + self.mlp(t)
        return self.head(self.pool(t.permute(0, 3, 1, 2)).flatten(1))


@pytest.fixture(scope="module")
def vit_tree():
    model = tiny_vit().double().eval()
    ex = cw.Explainer(model, rules="attnlrp", input_bounds=(0, 1))
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    return ex, x, ex.explain(x, 2, contrast="clrp1")


def test_vit_layers_name_their_axes(vit_tree) -> None:
    _, _, tree = vit_tree
    layers = tree["layers"]
    mlp = layers[MLP0].ds
    assert mlp.relevance.dims == ("kind", "sample", "channel", "token")
    assert mlp.sizes["channel"] == 64 and mlp.sizes["token"] == 17
    assert mlp.activation.dims == ("sample", "channel", "token")
    attrs = cw.results.decode_attrs(mlp.attrs)
    assert attrs["unit_kind"] == "unit" and attrs["layout"] == ["sample", "token", "channel"]
    # the class token first, then the 4 x 4 patch grid row by row
    assert list(mlp.token_kind.values[:2]) == ["class", "patch"]
    assert (int(mlp.patch_y[0]), int(mlp.patch_x[0])) == (-1, -1)
    assert mlp.patch_y.values[1:].tolist() == [i // 4 for i in range(16)]
    assert mlp.patch_x.values[1:].tolist() == [i % 4 for i in range(16)]
    attn = layers[f"{BLOCK}.self_attention:softmax"].ds
    assert attn.relevance.dims == ("kind", "sample", "channel", "query", "key")
    assert attn.sizes["channel"] == 4
    assert cw.results.decode_attrs(attn.attrs)["unit_kind"] == "head"
    av = layers[f"{BLOCK}.self_attention:matmul.1"].ds
    assert av.relevance.dims[2:] == ("channel", "token", "head_dim")
    conv = layers["conv_proj"].ds  # the patch embedding stays a CNN layer
    assert conv.relevance.dims == ("kind", "sample", "channel", "y", "x")
    assert layers["heads.head"].ds.relevance.dims == ("kind", "sample", "unit")


def test_vit_neuron_relevance_is_per_hidden_unit_and_head(vit_tree) -> None:
    ex, x, tree = vit_tree
    raw = ex.engine.run(x, 2, kinds=("contrast",), capture=[MLP0]).layers[MLP0].relevance
    per_unit = raw[0, 0].sum(0).numpy()  # raw layout (token, unit): sum over the tokens
    node = tree["layers"][MLP0].ds
    got = node.neuron_relevance.sel(kind="contrast").values[0]
    np.testing.assert_allclose(got, per_unit, rtol=1e-10, atol=1e-14)
    for name in (MLP0, f"{BLOCK}:add", f"{BLOCK}.self_attention:softmax"):
        ds = tree["layers"][name].ds
        total = float(ds.relevance.sel(kind="target").sum())
        assert math.isclose(float(ds.neuron_relevance.sel(kind="target").sum()), total)
    heads = tree["layers"][f"{BLOCK}.self_attention:softmax"].ds
    rel = heads.relevance.sel(kind="target").values[0]
    np.testing.assert_allclose(
        heads.neuron_relevance.sel(kind="target").values[0], rel.sum((1, 2)), rtol=1e-10
    )


# ------------------------------------------------ conditional maps: Gradient x Input oracle
# (test_vit's modified-gradient pieces: the identity rule on GELU, LXT's gradient division)
def _conditional_oracle(model: nn.Module, x: Tensor, target: int, block: int, unit: int) -> Tensor:
    """AttnLRP as Gradient x Input (LXT's form): the relevance at block ``block``'s first MLP
    layer ``h`` is ``h * g`` (``g`` its modified gradient); kept on hidden ``unit`` and taken
    down to the input it is ``x * d(h[..., unit] . g[..., unit]) / dx``, summed over colour."""
    x = x.clone().requires_grad_(True)
    taps: list[Tensor] = []
    n = x.shape[0]
    t = model.conv_proj(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.class_token.expand(n, -1, -1), t], dim=1) + model.encoder.pos_embedding
    for i, layer in enumerate(model.encoder.layers):
        a = layer.self_attention
        q, k, v = nn.functional.linear(_ln(t, layer.ln_1), a.in_proj_weight, a.in_proj_bias).chunk(
            3, dim=-1
        )
        heads, d = a.num_heads, q.shape[-1] // a.num_heads
        q, k, v = (u.reshape(n, -1, heads, d).transpose(1, 2) for u in (q, k, v))
        q, k, v = _Scale.apply(q, 4.0), _Scale.apply(k, 4.0), _Scale.apply(v, 2.0)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1) @ v
        t = t + a.out_proj(att.transpose(1, 2).reshape(n, -1, heads * d))
        h = layer.mlp[0](_ln(t, layer.ln_2))
        if i == block:
            h.retain_grad()
            taps.append(h)
        t = t + layer.mlp[3](_Identity.apply(h))
    logits = model.heads(_ln(t, model.encoder.ln)[:, 0])
    logits[:, target].sum().backward(retain_graph=True)
    (h,) = taps
    assert h.grad is not None
    (grad,) = torch.autograd.grad((h[..., unit] * h.grad[..., unit]).sum(), [x])
    return (x * grad).detach().sum(1)


def test_vit_conditional_map_keeps_a_hidden_unit_not_a_token() -> None:
    model = tiny_vit().double().eval()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    ex = cw.Explainer(model, rules="attnlrp", input_bounds=(0, 1), overrides=gxi_overrides())
    units = [3, 40]
    maps = ex.conditional(x, 2, MLP0, units, contrast="lrp")
    assert maps.dims == ("channel", "sample", "y", "x") and maps.sizes["channel"] == 2
    for g, unit in enumerate(units):
        expected = _conditional_oracle(model, x, 2, 1, unit)[0].numpy()
        scale = float(np.abs(expected).max())
        assert scale > 0
        np.testing.assert_allclose(maps.values[g, 0], expected, atol=1e-6 * scale, rtol=0)


def test_vit_neuron_and_decompose_use_the_unit_axis(vit_tree) -> None:
    ex, x, _ = vit_tree
    # the paper's neuron explanation seeds one hidden unit over every token
    seeded = ex.neuron(x, MLP0, 5, contrast=None, layers=[MLP0])
    act = seeded["layers"][MLP0].ds.activation.values[0]
    rel = seeded["layers"][MLP0].ds.relevance.sel(kind="target").values[0]
    np.testing.assert_allclose(rel[5], act[5], rtol=1e-12)
    assert not rel[np.arange(64) != 5].any()
    parts = ex.decompose(x, 2, f"{BLOCK}.mlp.3", 7, into=MLP0)
    assert parts.sizes["channel"] == 64  # hidden units of the MLP, not its 17 tokens


def test_channels_last_layers_and_conservation_of_a_units_map() -> None:
    torch.manual_seed(1)
    model = SwinLike().double().eval()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    ex = cw.Explainer(
        model, rules="paper", input_bounds=(0, 1), overrides={nn.Linear: Epsilon(1e-9)}
    )
    tree = ex.explain(x, 1, contrast="lrp")
    for name, units in (("mlp.0", 16), ("mlp.2", 8), (":add", 8)):
        ds = tree["layers"][name].ds
        assert ds.relevance.dims == ("kind", "sample", "channel", "y", "x"), name
        assert (ds.sizes["channel"], ds.sizes["y"], ds.sizes["x"]) == (units, 4, 4), name
        assert cw.results.decode_attrs(ds.attrs)["layout"] == ["sample", "y", "x", "channel"]
    assert tree["layers"]["embed"].ds.relevance.dims[2:] == ("channel", "y", "x")
    node = tree["layers"]["mlp.0"].ds
    per_unit = node.neuron_relevance.sel(kind="target").values[0]
    maps = ex.conditional(x, 1, "mlp.0", range(16), contrast="lrp").values[:, 0]
    # conservation (bias-free z^B, epsilon 1e-9, proportional sums): unit c's map sums to c's
    np.testing.assert_allclose(maps.sum((1, 2)), per_unit, rtol=1e-6, atol=1e-9)
    assert np.ptp(per_unit) > 1e-3 * np.abs(per_unit).max()  # the units differ


def test_vit_tree_round_trips_through_netcdf(vit_tree, tmp_path) -> None:
    _, _, tree = vit_tree
    path = tmp_path / "vit.nc"
    tree.to_netcdf(path)
    back = cw.results.open_tree(path)
    for name in (MLP0, f"{BLOCK}.self_attention:softmax"):
        got, want = back["layers"][name].ds, tree["layers"][name].ds
        assert got.relevance.dims == want.relevance.dims
        np.testing.assert_array_equal(got.relevance.values, want.relevance.values)
    mlp = back["layers"][MLP0].ds
    assert list(mlp.token_kind.values[:2]) == ["class", "patch"]
    assert cw.results.decode_attrs(mlp.attrs)["patch_grid"] == [4, 4]


def test_torchvision_swin_layers_are_channels_last_with_units_first() -> None:
    torch.manual_seed(0)
    model = torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=[2, 2],
        num_classes=5,
    ).double().eval()  # fmt: skip
    ex = cw.Explainer(model, rules="attnlrp", input_bounds=(0, 1))
    tree = ex.explain(torch.rand(1, 3, 32, 32, dtype=torch.float64), 1, contrast="clrp1")
    for name, shape in (
        ("features.1.0:add", (16, 8, 8)),  # residual sum: the axis of the same-shaped MLP
        ("features.1.0.mlp.0", (64, 8, 8)),
        ("features.2.reduction", (32, 4, 4)),  # patch merging's Linear
        ("features.3.0:add.1", (32, 4, 4)),
    ):
        ds = tree["layers"][name].ds
        assert ds.relevance.dims[2:] == ("channel", "y", "x"), name
        assert tuple(ds.relevance.shape[2:]) == shape, name
        assert cw.results.decode_attrs(ds.attrs)["layout"] == ["sample", "y", "x", "channel"]
        rel = ds.relevance.sel(kind="contrast").values[0]
        np.testing.assert_allclose(
            ds.neuron_relevance.sel(kind="contrast").values[0], rel.sum((1, 2)), rtol=1e-10
        )
    assert tree["layers"]["features.0.0"].ds.relevance.dims[2:] == ("channel", "y", "x")
    assert tree["layers"]["avgpool"].ds.relevance.dims[2:] == ("channel", "y", "x")

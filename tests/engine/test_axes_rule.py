"""engine.axes.layer_axes on layer names and shapes alone: which op decides the neuron axis."""

from __future__ import annotations

from torch import nn

from clrp_widgets.engine.axes import layer_axes


def _axes(layers: list[tuple[str, tuple[int, ...]]], modules: dict | None = None) -> dict:
    shapes = dict(layers)
    return layer_axes([n for n, _ in layers], shapes, modules or {})


def test_cnn_layers_keep_axis_one_and_sums_inherit_it() -> None:
    got = _axes(
        [("conv", (2, 8, 6, 6)), ("block:add", (2, 8, 6, 6)), ("fc", (2, 5))],
        {"conv": nn.Conv2d(3, 8, 3), "fc": nn.Linear(8, 5)},
    )
    assert (got["conv"].feature, got["conv"].kind, got["conv"].positions) == (
        1,
        "channel",
        ("y", "x"),
    )
    assert (got["block:add"].feature, got["block:add"].positions) == (1, ("y", "x"))
    assert (got["fc"].feature, got["fc"].kind, got["fc"].positions) == (1, "unit", ())


def test_token_channels_last_and_attention_layers() -> None:
    got = _axes(
        [
            ("embed", (1, 16, 4, 4)),
            ("attn:linear", (1, 17, 48)),
            ("attn:matmul", (1, 4, 17, 17)),
            ("attn:matmul.1", (1, 4, 17, 4)),
            ("block:add", (1, 17, 16)),  # inherits from the later same-shaped Linear
            ("mlp.0", (1, 17, 16)),
            ("swin:add", (1, 4, 4, 16)),  # channels-last, same grid as the embedding
            ("swin.mlp", (1, 4, 4, 16)),
        ],
        {
            "embed": nn.Conv2d(3, 16, 8, stride=8),
            "mlp.0": nn.Linear(16, 16),
            "swin.mlp": nn.Linear(16, 16),
        },
    )
    assert got["attn:linear"].positions == ("token",) and got["attn:linear"].feature == 2
    assert got["attn:linear"].grid == (4, 4) and got["attn:linear"].layout[1:] == (
        "token",
        "channel",
    )
    assert (got["attn:matmul"].kind, got["attn:matmul"].positions) == ("head", ("query", "key"))
    assert got["attn:matmul"].grid == (4, 4)
    assert got["attn:matmul.1"].positions == ("token", "head_dim")
    assert (got["block:add"].feature, got["block:add"].kind) == (2, "unit")
    assert (got["swin:add"].feature, got["swin:add"].positions) == (3, ("y", "x"))


def test_partitions_and_many_axes_get_generic_names() -> None:
    got = _axes(
        [
            ("mb", (1, 8, 8, 8)),
            ("win.qkv", (1, 16, 4, 24)),  # (N, windows, positions, C): 64 pixels rearranged
            ("win:einsum", (1, 16, 2, 4, 4)),  # (N, G, heads, I, J)
        ],
        {"mb": nn.Conv2d(8, 8, 1), "win.qkv": nn.Linear(8, 24)},
    )
    assert got["win.qkv"].positions == ("axis1", "axis2") and got["win.qkv"].feature == 3
    assert got["win:einsum"].positions == ("axis2", "axis3", "axis4")

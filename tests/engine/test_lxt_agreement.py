"""Agreement with LXT 2.1 (the AttnLRP authors' code) on torchvision's vit_b_16.

LXT patches ``torch.nn.GELU``, ``torch.nn.LayerNorm`` and ``torch.nn.MultiheadAttention`` for
the whole process, so it runs in a subprocess that loads the same weights and input. For
torchvision's ViT, LXT 2.1 applies CP-LRP inside attention (``lxt.efficient.models.vit_torch``):
our ``rules="cp_lrp"``. Deliberate differences, undone here with ``overrides``:

- the preset puts z^B on the patch embedding (the first-layer rule of this package); LXT's plain
  Gradient x Input is the epsilon rule there;
- the preset stabilises every epsilon/z rule with 1e-6; LXT has no stabiliser (1e-10 in its
  identity rule). With 1e-12 here the maps agree to 4e-7 of their maximum (LRP and CLRP1).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from test_vit import gxi_overrides
from torch import nn

from clrp_widgets.engine import RelevanceEngine

CHILD = textwrap.dedent(
    """
    import sys
    import torch
    try:
        from lxt.efficient import monkey_patch
    except ImportError as error:
        print(f"lxt is not importable: {error!r}")
        sys.exit(3)
    from torchvision.models import vision_transformer

    monkey_patch(vision_transformer)
    data = torch.load(sys.argv[1])
    model = vision_transformer.vit_b_16(image_size=data["size"]).double().eval()
    model.load_state_dict(data["state"])
    x = data["x"].clone().requires_grad_(True)
    logits = model(x)
    maps = []
    for seed in data["seeds"]:
        (grad,) = torch.autograd.grad(logits, x, seed, retain_graph=True)
        maps.append((x * grad).detach())
    torch.save(torch.stack(maps), sys.argv[2])
    """
)


def _clrp1_seed(logits: torch.Tensor, target: int) -> torch.Tensor:
    n, c = logits.shape
    z = logits[:, target]
    seed = -(z / (c - 1))[:, None].expand(n, c).clone()
    seed[:, target] = z
    return seed


@pytest.mark.slow
def test_vit_b_16_cp_lrp_agrees_with_lxt(tmp_path: Path) -> None:
    torch.manual_seed(0)
    size, target = 32, 7
    model = torchvision.models.vit_b_16(image_size=size).double().eval()
    nn.init.normal_(model.heads.head.weight, std=0.05)  # torchvision zeroes the head
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    engine = RelevanceEngine(model, rules="cp_lrp", input_bounds=(0, 1), overrides=gxi_overrides())
    logits = engine.logits(x)
    lrp_seed = torch.zeros_like(logits)
    lrp_seed[:, target] = logits[:, target]
    # Gradient x Input seeds the output gradient: relevance R at the logits is gradient R / z
    seeds = [lrp_seed / logits, _clrp1_seed(logits, target) / logits]
    torch.save(
        {"size": size, "state": model.state_dict(), "x": x, "seeds": seeds}, tmp_path / "in.pt"
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode == 3:
        pytest.skip(done.stdout.strip() + " (install the test extra: pip install -e '.[test]')")
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = torch.load(tmp_path / "out.pt")
    ours = [
        engine.run(x, target, contrast="lrp").input[0],
        engine.run(x, target, contrast="clrp1").input[0],
    ]
    for name, got, expected in zip(("lrp", "clrp1"), ours, theirs, strict=True):
        scale = float(expected.abs().amax())
        assert scale > 0, name
        error = float((got - expected).abs().amax()) / scale
        print(f"LXT agreement, {name}: {error:.2g} of the map's maximum")
        assert error <= 1e-4, f"{name}: max deviation {error:.2g} of the map's maximum"

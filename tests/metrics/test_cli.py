"""The evaluation CLI end to end on a few scenes, on an ImageNet-style folder, and its errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
from metrics_fixtures import write_scenes_as_imagenet

import clrp_widgets as cw
from clrp_widgets.metrics.cli import main
from clrp_widgets.metrics.data import EvalData

ARGS = ["--n", "4", "--methods", "lrp,clrp1", "--no-progress"]
METRICS = ["--metrics", "pointing_game,ablation,class_sensitivity"]


@pytest.fixture(scope="module")
def bundle():
    return cw.load_model("shapes")


def test_table_json_and_netcdf_match_the_library(tmp_path, capsys, bundle):
    out_json, out_nc = tmp_path / "r.json", tmp_path / "r.nc"
    assert main([*ARGS, *METRICS, "--json", str(out_json), "--netcdf", str(out_nc)]) == 0
    printed = capsys.readouterr().out
    assert "pointing_game ↑" in printed and "class_sensitivity ↓" in printed
    assert printed.splitlines()[2].startswith("lrp") and "(4 images, model shapes" in printed
    got = json.loads(out_json.read_text())
    metrics = ["pointing_game", "ablation", "class_sensitivity"]
    ds = cw.evaluate(bundle, cw.scenes(4, seed=0), ["lrp", "clrp1"], metrics, progress=False)
    assert set(got) == {"lrp", "clrp1"}
    for method, row in got.items():
        assert set(row) == {"pointing_game", "ablation", "class_sensitivity"}
        for metric, value in row.items():
            ref = float(ds["score"].sel({"method": method, "metric": metric}))
            assert value == pytest.approx(ref, abs=1e-6)
    xr.testing.assert_identical(xr.open_dataset(out_nc, engine="h5netcdf").load(), ds)


def test_imagenet_folder_through_the_cli(tmp_path, capsys, bundle):
    s = cw.scenes(5, seed=2)
    write_scenes_as_imagenet(s, tmp_path / "imgs")
    out = tmp_path / "r.json"
    rc = main([*ARGS, "--n", "5", "--metrics", "pointing_game", "--imagenet",
               str(tmp_path / "imgs"), "--json", str(out)])  # fmt: skip
    assert rc == 0
    # reference: the same scenes, quantised to 8 bits as the PNGs are, in the folder's order
    ref = EvalData.from_scenes(s)
    quantised = torch.from_numpy(np.round(s.images.values * 255).astype(np.float32) / 255)
    ref = EvalData(quantised, ref.labels, ref.boxes, ref.object_class, ref.ids, ref.class_names)
    order = sorted(range(5), key=lambda i: (s.class_names[s.object_class.values[i, 0]], i))
    ds = cw.evaluate(bundle, ref[order], methods=["lrp", "clrp1"], metrics=["pointing_game"],
                     progress=False)  # fmt: skip
    got = json.loads(out.read_text())
    for m in ("lrp", "clrp1"):
        ref_value = float(ds["score"].sel({"method": m}).item())
        assert got[m]["pointing_game"] == pytest.approx(ref_value, abs=1e-6)


def test_missing_weights_and_bad_names_exit_with_a_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["--model", "vgg16", "--n", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "vgg16" in err
    assert main([*ARGS, "--methods", "lrp,nope"]) == 2
    assert "unknown methods" in capsys.readouterr().err


def test_module_entry_point_runs():
    cmd = [sys.executable, "-m", "clrp_widgets.evaluate", "--n", "2", "--methods", "gradient",
           "--metrics", "pointing_game", "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "gradient" in done.stdout and "pointing_game" in done.stdout


# ----- every failure is one line naming the file and the fix; outputs are atomic (issue 10)


def _evaluate_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "clrp_widgets.evaluate", "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_cli_refuses_bad_paths_and_prints_help_before_loading_torch(tmp_path):
    """A mistyped path or ``--help`` answers at once: no torch, xarray or numpy is imported."""
    probe = (
        "import sys, contextlib, io\n"
        "from clrp_widgets.evaluate import main\n"
        "code = main(['--imagenet', sys.argv[1]])\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "heavy = [m for m in ('torch', 'xarray', 'numpy') if m in sys.modules]\n"
        "text = out.getvalue()\n"
        "print(code, 'pointing_game' in text, 'guided_backprop' in text, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "2 True True []", result.stdout + result.stderr
    assert "nope" in result.stderr and "not a folder" in result.stderr


def test_cli_metric_names_are_the_runners_metrics():
    """The CLI's light metric names (no torch) list exactly the metrics the runner builds."""
    from clrp_widgets.metrics import names, runner

    assert names.METRICS == tuple(runner.METRICS)


def test_cli_corrupt_image_is_reported_or_aborts_with_strict(tmp_path):
    s = cw.scenes(3, seed=0)
    write_scenes_as_imagenet(s, tmp_path / "imgs")
    broken = sorted((tmp_path / "imgs").rglob("*.png"))[0]
    broken.write_bytes(b"\x89PNG truncated")
    common = ["--n", "3", "--methods", "gradient", "--metrics", "pointing_game"]
    out = tmp_path / "r.json"
    line = _one_error_line(
        _evaluate_cli(*common, "--imagenet", str(tmp_path / "imgs"), "--strict", "--json", str(out))
    )
    assert broken.name in line and "--strict" in line and not out.exists()
    done = _evaluate_cli(*common, "--imagenet", str(tmp_path / "imgs"), "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "skipped 1 unreadable image" in done.stderr and broken.name in done.stderr
    assert "(2 images" in done.stdout and set(json.loads(out.read_text())) == {"gradient"}


def test_cli_missing_folder_and_unwritable_outputs_are_one_line(tmp_path):
    common = ["--n", "2", "--methods", "gradient", "--metrics", "pointing_game"]
    line = _one_error_line(_evaluate_cli(*common, "--imagenet", str(tmp_path / "nope")))
    assert "nope" in line and "not a folder" in line
    (tmp_path / "taken").mkdir()
    old = tmp_path / "old.md"
    old.write_text("previous table")
    result = _evaluate_cli(*common, "--markdown", str(old), "--netcdf", str(tmp_path / "taken"))
    line = _one_error_line(result)
    assert "taken" in line and "check the path" in line
    assert result.stdout == ""  # refused before the run: no table, no evaluation lost
    line = _one_error_line(_evaluate_cli(*common, "--classes", str(tmp_path / "none.txt")))
    assert "none.txt" in line and "--classes" in line
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

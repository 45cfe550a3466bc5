"""``python -m clrp_widgets.evaluate`` / ``clrp-evaluate``: the paper's evaluation from a shell.

Examples
--------
python -m clrp_widgets.evaluate --model shapes --n 500 --methods lrp,clrp1,clrp2,sglrp,gradient \\
    --metrics pointing_game,strict_pointing_game,ablation,class_sensitivity --json out.json
python -m clrp_widgets.evaluate --model vgg16 --imagenet val/ --annotations val_xml/ \\
    --classes LOC_synset_mapping.txt --n 1000
python -m clrp_widgets.evaluate --model my_voc_model --voc07 VOCdevkit/ --n 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clrp_widgets.metrics.names import DEFAULT_METRICS, METHODS, METRICS

# Only light modules above: --help and the path checks answer before torch, xarray or the model
# load (about 5 s); the rest is imported where it is used.

CLI_METHODS = ("lrp", "clrp1", "clrp2", "sglrp", "gradient")


def parser() -> argparse.ArgumentParser:
    """The argument parser (also documents every option in ``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m clrp_widgets.evaluate",
        description="Pointing game, ablation and class sensitivity of LRP, CLRP and baselines.",
    )
    p.add_argument("--model", default="shapes", help="cw.load_model name (default: shapes)")
    p.add_argument("--weights", help="weights file (default: shipped file / torch hub cache)")
    p.add_argument("--n", type=int, default=500, help="number of images (default 500)")
    p.add_argument("--seed", type=int, default=0, help="scene seed for --model shapes data")
    p.add_argument("--methods", default=",".join(CLI_METHODS), help=f"from {','.join(METHODS)}")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help=f"from {','.join(METRICS)}")
    p.add_argument("--targets", default="present", choices=("present", "predicted"))
    p.add_argument("--batch-size", type=int, default=32)
    data = p.add_mutually_exclusive_group()
    data.add_argument("--imagenet", metavar="DIR", help="ImageNet-style folder with VOC XML boxes")
    data.add_argument("--voc07", metavar="DIR", help="VOCdevkit or VOC2007 folder")
    p.add_argument("--annotations", metavar="DIR", help="XML folder for --imagenet, if separate")
    p.add_argument("--split", default="test", help="VOC07 split (default test)")
    p.add_argument("--difficult", action="store_true", help="VOC07: keep difficult objects")
    p.add_argument("--classes", metavar="FILE", help="annotation name -> class index (txt/json)")
    p.add_argument("--size", type=int, help="folder images' side (default: the model's crop size)")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first unreadable image (default: skip)"
    )
    p.add_argument("--json", metavar="PATH", help='write {"<method>": {"<metric>": value}}')
    p.add_argument("--netcdf", metavar="PATH", help="write the full result Dataset (netCDF)")
    p.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _data(args: argparse.Namespace, bundle: Any) -> Any:
    if not (args.imagenet or args.voc07):
        return args.n
    from clrp_widgets.metrics.data import normaliser
    from clrp_widgets.metrics.loaders import load_imagenet_folder, load_voc07

    pre = getattr(bundle, "preprocess", None)
    size = args.size or getattr(pre, "crop", None) or 224
    common = {
        "size": size,
        "classes_file": args.classes,
        "preprocess": normaliser(pre),
        "limit": args.n,
        "strict": args.strict,
    }
    names = tuple(bundle.class_names or ())
    if args.imagenet:
        return load_imagenet_folder(args.imagenet, names, annotations=args.annotations, **common)
    return load_voc07(
        args.voc07, names, split=args.split, include_difficult=args.difficult, **common
    )


def _write_outputs(args: argparse.Namespace, ds: Any) -> None:
    """Each output is written to a temporary file and renamed (never half-written)."""
    from clrp_widgets.metrics.report import format_markdown, scores_dict
    from clrp_widgets.results.files import write_atomic

    if args.json:
        text = json.dumps(scores_dict(ds), indent=2) + "\n"
        write_atomic(args.json, lambda tmp: tmp.write_text(text))
        print(f"wrote {args.json}")
    if args.markdown:
        text = format_markdown(ds) + "\n"
        write_atomic(args.markdown, lambda tmp: tmp.write_text(text))
        print(f"wrote {args.markdown}")
    if args.netcdf:
        write_atomic(args.netcdf, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
        print(f"wrote {args.netcdf}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation CLI; returns the process exit status.

    Every failure is one line on stderr (``error: ...``, naming the file and the fix) and exit
    status 2; outputs are written atomically, so a failed run leaves no partial file.
    """
    args = parser().parse_args(argv)
    refused = _refused(args)
    if refused:
        return _fail(refused)
    from clrp_widgets.engine.errors import CLRPError
    from clrp_widgets.metrics.report import format_table
    from clrp_widgets.metrics.runner import evaluate
    from clrp_widgets.models.loaders import load_model

    try:
        kwargs = {"weights_path": args.weights} if args.weights else {}
        bundle = load_model(args.model, **kwargs)
        ds = evaluate(
            bundle,
            _data(args, bundle),
            methods=[m.strip() for m in args.methods.split(",") if m.strip()],
            metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
            targets=args.targets,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            seed=args.seed,
        )
        print(format_table(ds))
        _write_outputs(args, ds)
    except CLRPError as err:
        return _fail(str(err))
    except OSError as err:
        name = err.filename or "a file"
        return _fail(f"cannot read or write {name}: {err.strerror or err}; check the path.")
    except KeyboardInterrupt:
        return _fail("interrupted; no output was written.", 130)
    except Exception as err:  # one line, never a traceback (the CLI contract)
        return _fail(
            f"unexpected {type(err).__name__}: {err}. Check the inputs; if they are valid, "
            "please report this with the command line."
        )
    return 0


def _refused(args: argparse.Namespace) -> str | None:
    """Why the given paths cannot work, found before the model loads and the run starts (an
    output that is a folder would otherwise fail only after the whole evaluation), or None."""
    folders = {
        "imagenet": "the ImageNet-style image folder",
        "voc07": "the VOCdevkit or VOC2007 folder",
        "annotations": "the folder of VOC XML box files",
    }
    for option, what in folders.items():
        path = getattr(args, option)
        if path and not Path(path).is_dir():
            return f"{path} is not a folder; pass {what} (--{option})."
    for option in ("classes", "weights"):
        path = getattr(args, option)
        if path and not Path(path).is_file():
            return f"No file at {path}; check the path given to --{option}."
    for option in ("json", "markdown", "netcdf"):
        path = getattr(args, option)
        if not path:
            continue
        target = Path(path)
        folder = next((p for p in target.parents if p.exists()), Path("."))
        if target.is_dir():
            return f"cannot write {path}: it is a folder; check the path given to --{option}."
        if not os.access(folder, os.W_OK):
            return f"cannot write {path}: {folder} is not writable; check the path."
    return None


def _fail(message: str, status: int = 2) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return status

"""`python -m mokd prepare-data WHAT ...` builds embedded datasets and split files;
`python -m mokd check-data --spec JSON --split S` checks that a dataset is where its config says."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments_for(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "check-data":
        parser.add_argument("--spec", required=True, help="dataset config as JSON (see mokd.data.build_dataset)")
        parser.add_argument("--split", default="train", choices=["train", "val"])
        return
    sub = parser.add_subparsers(dest="what", required=True)
    fm = sub.add_parser("fashion-mnist", help="Fashion-MNIST from the Debian package files (or a download)")
    fm.add_argument("--root", required=True)
    cs = sub.add_parser("cifar-standin", help="CIFAR-10/100-format stand-ins from real small datasets")
    cs.add_argument("--root", required=True)
    cs.add_argument("--fashion-root", required=True)
    cs.add_argument("--per-class-train", type=int, default=120)
    cs.add_argument("--per-class-val", type=int, default=30)
    cs.add_argument("--seed", type=int, default=0)
    co = sub.add_parser("coco-synthetic", help="COCO-format instance set of Fashion-MNIST objects on canvases")
    co.add_argument("--root", required=True)
    co.add_argument("--source", required=True, help="source dataset config as JSON")
    co.add_argument("--n-train", type=int, default=400)
    co.add_argument("--n-val", type=int, default=80)
    co.add_argument("--canvas", type=int, default=96)
    co.add_argument("--objects", type=int, nargs=2, default=[1, 3], metavar=("MIN", "MAX"))
    co.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from mokd import data

    # errors reach mokd/cli.py, which prints them on one line with their exit code
    if args.command == "check-data":
        data.check_dataset(json.loads(args.spec), args.split)
        print(f"ok: {args.split} split of {args.spec}")
    elif args.what == "fashion-mnist":
        print(f"Fashion-MNIST ready in {data.prepare_fashion_mnist(Path(args.root))}")
    elif args.what == "cifar-standin":
        from mokd.data.standins import build_cifar_standins

        build_cifar_standins(Path(args.root), Path(args.fashion_root), args.per_class_train, args.per_class_val, args.seed)
        print(f"CIFAR-10/100 stand-ins written under {args.root}")
    elif args.what == "coco-synthetic":
        from mokd.data.coco_synthetic import build_synthetic_coco

        out = build_synthetic_coco(
            args.root, json.loads(args.source), n_train=args.n_train, n_val=args.n_val,
            canvas=args.canvas, objects_per_image=tuple(args.objects), seed=args.seed, overwrite=True,
        )
        print(f"COCO-format set written to {out}")
    return 0

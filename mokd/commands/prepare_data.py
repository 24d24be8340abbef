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
    pf = sub.add_parser("paper-fixtures", help="small ImageNet, CIFAR and COCO sets in the paper's own formats "
                                               "(the rehearsal of the paper scale, config/rehearsal.yaml)")
    pf.add_argument("--root", required=True)
    pf.add_argument("--fashion-root", required=True, help="prepared Fashion-MNIST (prepare-data fashion-mnist)")
    pf.add_argument("--class-list", default="config/imagenet100_classes.txt", help="the ImageNet-100 wnids")
    pf.add_argument("--classes-with-images", type=int, default=10, help="classes of each set that hold images")
    pf.add_argument("--train-per-class", type=int, default=3)
    pf.add_argument("--val-per-class", type=int, default=4)
    pf.add_argument("--image-size", type=int, default=96, help="short side of the ImageNet-layout images (px)")


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
    elif args.what == "paper-fixtures":
        from mokd.data.paper_fixtures import build_paper_fixtures

        out = build_paper_fixtures(args.root, args.fashion_root, args.class_list,
                                   classes_with_images=args.classes_with_images, train_per_class=args.train_per_class,
                                   val_per_class=args.val_per_class, image_size=args.image_size)
        print(f"paper-format fixtures ready in {out}: imagenet/ (train, val, splits), cifar/, coco/")
    return 0

"""`python -m mokd <command>`: one subcommand per pipeline step, each in its own module.

A command module defines `add_arguments(parser)` and `run(args) -> int`; it is imported only when its
command runs, so `python -m mokd knn` does not pay for detection imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("mokd.commands.pretrain", "MOKD pair or DINO baseline pre-training"),
    "prepare-data": ("mokd.commands.prepare_data", "prepare the embedded datasets and derived splits"),
    "check-data": ("mokd.commands.prepare_data", "check that a dataset is where the config says"),
    "knn": ("mokd.eval.knn", "weighted k-NN classification of teacher features"),
    "linear": ("mokd.eval.linear", "linear probe on the frozen teacher backbone"),
    "finetune": ("mokd.eval.finetune", "fine-tuning (semi-supervised subsets, CIFAR transfer)"),
    "detect": ("mokd.eval.detection", "C4 Mask R-CNN detection and instance segmentation (COCO format)"),
    "tsne": ("mokd.eval.tsne", "t-SNE figure of the features of a pair and its baselines"),
    "attn-distance": ("mokd.eval.attention_distance", "mean attention distance per layer"),
    "cost": ("mokd.eval.cost", "training time and peak memory from pre-training summaries"),
    "table": ("mokd.tables.build", "build one results table (Markdown and LaTeX)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m mokd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    cmd_parser = argparse.ArgumentParser(prog=f"python -m mokd {argv[0]}", description=COMMANDS[argv[0]][1])
    if hasattr(module, "add_arguments_for"):
        module.add_arguments_for(argv[0], cmd_parser)
    else:
        module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    args.command = argv[0]
    return int(module.run(args) or 0)

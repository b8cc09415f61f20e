"""``bertjobs models quantize``: the command's parser and output (the work is worker/ops/quantize.py's). Imports
nothing heavy, so building the ``bertjobs`` parser stays fast."""
from __future__ import annotations

import argparse


def add_command(models: argparse._SubParsersAction, json_parent: argparse.ArgumentParser) -> None:
    """``bertjobs models quantize`` (hooked into worker/cli/models.py)."""
    q = models.add_parser("quantize", parents=[json_parent],
                          help="build a version's OpenVINO int8 model once, from a fixed calibration sample, and "
                               "record its accuracy next to fp32's")
    q.add_argument("ref", help="NAME, NAME:VERSION or NAME@ALIAS")
    q.add_argument("--collection", help="calibrate on (and score against) this labelled collection; needed for "
                                        "versions trained before the artifact kept its own sample")
    q.add_argument("--force", action="store_true", help="build it again even if a usable one exists")
    q.set_defaults(func=cmd_quantize)


def cmd_quantize(args) -> int:
    from worker.present import print_json
    from worker.ops.quantize import KEY, quantize_version

    name, record, built = quantize_version(args.ref, collection=args.collection, force=args.force)
    if getattr(args, "json", False):
        print_json({"model": name, "built": built, KEY: record})
        return 0
    cal = record["calibration"]
    print(f"{name}: OpenVINO int8 {'built in %.0f s' % record['build_seconds'] if built else 'already built'} from "
          f"{cal['size']} texts ({cal['source']}, seed {cal['seed']}); sha256 {record['sha256'][:16]}")
    if "int8" in record:
        fp32, int8, on = record["fp32"], record["int8"], record["evaluated_on"]
        print(f"  on {on['what']} ({on['texts']} texts): accuracy fp32 {fp32['accuracy']:.4f}, int8 "
              f"{int8['accuracy']:.4f}; macro-F1 fp32 {fp32['macro_f1']:.4f}, int8 {int8['macro_f1']:.4f}")
    return 0

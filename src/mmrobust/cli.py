"""``mmrobust`` command line.

mmrobust train [hydra overrides ...] [--multirun]    train + every-subset evaluation + report
mmrobust eval RUN_DIR|CHECKPOINT [--split S ...]     re-evaluate every subset (default: the run's eval.splits)
mmrobust report DIR [DIR ...] [--out DIR]            aggregate runs (mean ± std over seeds)
mmrobust data check [hydra overrides ...]            what is present, missing and expected
mmrobust analyze dmrnet RUN [RUN ...] [--out DIR]    DMRNet figures: σ² per subset, D_channel, α sweep

Errors are one line on stderr (`mmrobust: <kind>: ...`) and a non-zero exit code; MMROBUST_DEBUG=1 shows
the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from mmrobust.errors import user_errors

COMMANDS = ("train", "eval", "report", "data", "analyze")
DATA_USAGE = """usage: mmrobust data check dataset=NAME [dataset.KEY=VALUE ...]

Build the train, val and test splits of a dataset config and print, per split and modality, how many
samples have a readable file, an empty cell and an unreadable file. Overrides are the same as for
`mmrobust train` (e.g. dataset=manifest dataset.root=/data/mine 'dataset.modalities=[rgb,depth]')."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``mmrobust: usage error: ...``) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        print(f"mmrobust: usage error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    with user_errors():
        dispatch(args)


def usage_exit(message: str) -> NoReturn:
    print(f"mmrobust: usage error: {message}", file=sys.stderr)
    sys.exit(2)


def dispatch(args: list[str]) -> None:
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS and ("=" in command or command.startswith("-")):
        command, rest = "train", args  # a relaunched worker process gets the overrides only
    if command == "train":
        train(rest)
    elif command == "eval":
        parser = ArgumentParser(prog="mmrobust eval", description="Re-evaluate a run on every modality subset.")
        parser.add_argument("path", help="run directory or checkpoint file")
        parser.add_argument(
            "--split",
            action="append",
            default=None,
            choices=["train", "val", "test"],
            help="a split to evaluate (repeat for several; default: the run's eval.splits)",
        )
        parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/eval_<splits>)")
        ns = parser.parse_args(rest)
        from mmrobust.experiment import evaluate

        evaluate(ns.path, ns.split, ns.out)
    elif command == "report":
        report(rest)
    elif command == "data":
        wants_help = bool({"-h", "--help"} & set(rest[1:] if rest[:1] == ["check"] else rest[:1]))
        if wants_help:
            print(DATA_USAGE)
            return
        if not rest or rest[0] != "check":
            usage_exit("mmrobust data check dataset=NAME [dataset.root=...] (see mmrobust data --help)")
        from mmrobust.datacheck import check

        check(rest[1:])
    elif command == "analyze":
        from mmrobust.analysis import main as analyze

        analyze(rest)
    else:
        usage_exit(f"unknown command {command!r}; valid commands: {', '.join(COMMANDS)}")


def train(overrides: Sequence[str]) -> None:
    """Run the Hydra app with ``overrides``; Hydra re-raises (``HYDRA_FULL_ERROR``) so that errors of its
    own (composition, an uncreatable run folder) reach ``user_errors`` and become one line too."""
    from mmrobust import hydra_app

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    saved = sys.argv
    sys.argv = [hydra_app.__file__, *overrides]
    try:
        hydra_app.train_app()
    finally:
        sys.argv = saved


def report(args: Sequence[str]) -> None:
    parser = ArgumentParser(prog="mmrobust report", description="Aggregate runs into one table per metric.")
    parser.add_argument("dirs", nargs="+", help="run or sweep directories holding results.json files")
    parser.add_argument("--out", default=None, help="output folder (default: the first directory)")
    parser.add_argument("--split", default="test")
    ns = parser.parse_args(args)
    from mmrobust.evaluation.report import load_results, result_rows, write_report

    results = load_results(ns.dirs)
    paths = write_report(result_rows(results, ns.split), results[0]["modalities"], ns.out or ns.dirs[0])
    print(paths["markdown"].read_text())
    print(f"saved: {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()

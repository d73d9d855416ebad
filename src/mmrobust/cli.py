"""``mmrobust`` command line (``mmrobust --version``; ``mmrobust COMMAND --help`` for each command).

mmrobust train [hydra overrides ...] [--multirun]    train + every-subset evaluation + report
mmrobust eval RUN_DIR|CHECKPOINT [--split S ...]     re-evaluate every subset (default: the run's eval.splits)
    [corrupt=gaussian:5,salt:10 corrupt.fraction=0.5 corrupt.modalities=[a] corrupt.seed=0]  ...corrupted inputs
mmrobust report DIR [DIR ...] [--out DIR] [--paper T] aggregate runs (mean ± std over seeds), beside a paper table
mmrobust data check [hydra overrides ...]            read every input: shapes, classes, bad files
mmrobust analyze dmrnet RUN [RUN ...] [--out DIR]    DMRNet figures: σ² per subset, D_channel, α sweep
mmrobust prepare crema_d|kinetics_sounds RAW OUT     published raw videos → the loaders' layout (1-fps frames)
mmrobust predict RUN|CKPT INPUTS.csv [--out F.csv]   predict from the checkpoint alone (or --input MOD=PATH)
mmrobust export RUN|CKPT --format onnx|torchscript  one graph for every subset (+ its spec as JSON)

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

COMMANDS = ("train", "eval", "report", "data", "analyze", "prepare", "predict", "export")
DATA_USAGE = """usage: mmrobust data check dataset=NAME [dataset.KEY=VALUE ...]

Build the train, val and test splits of a dataset config, read every input once, and print per modality
the reader and the per-sample shape; per split and modality how many samples are present, an empty cell,
unreadable (missing, not that format, wrong shape, over a memory cap, decode error) or non-finite (NaN/Inf);
the class names and counts per split; and every bad file with its reason (beyond 20, all of them in
./data_check_problems.txt). Overrides are the same as for `mmrobust train` (e.g. dataset=manifest
dataset.root=/data/mine 'dataset.modalities=[rgb,depth]').

Exit status: 0 when no input is bad, 1 when any is, 2 for a config or dataset layout error."""


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
    if args[0] in ("-V", "--version"):
        from mmrobust import __version__

        print(f"mmrobust {__version__}")
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
        parser.add_argument(
            "corrupt",
            nargs="*",
            help="corrupted-input evaluation: corrupt=gaussian:5,salt:10 [corrupt.fraction=0.5] "
            "[corrupt.modalities=[a,b]] [corrupt.seed=0] (see mmrobust.evaluation.corrupted)",
        )
        ns = parser.parse_args(rest)
        from mmrobust.evaluation.corrupted import parse_eval_overrides
        from mmrobust.experiment import evaluate

        evaluate(ns.path, ns.split, ns.out, corrupt=parse_eval_overrides(ns.corrupt))
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

        problems = check(rest[1:])
        if problems:
            print(f"mmrobust: data check: {problems} bad input{'s' * (problems != 1)} (listed above)", file=sys.stderr)
            sys.exit(1)
    elif command == "analyze":
        from mmrobust.analysis import main as analyze

        analyze(rest)
    elif command == "prepare":
        prepare(rest)
    elif command == "predict":
        from mmrobust.deploy.commands import predict_command

        predict_command(rest)
    elif command == "export":
        from mmrobust.deploy.commands import export_command

        export_command(rest)
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


def prepare(args: Sequence[str]) -> None:
    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
        return int(text)

    def fraction(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.0 < value < 1.0:
            raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
        return value

    parser = ArgumentParser(
        prog="mmrobust prepare",
        description="Turn the published raw files of a dataset into the layout its loader reads: frames at 1 fps "
        "(JPEG), audio, split lists. Resumable: complete clips are skipped; unreadable clips are listed in "
        "OUT_DIR/prepare_unreadable.txt. Needs PyAV: pip install 'mmrobust[video]'.",
    )
    parser.add_argument("dataset", choices=["crema_d", "kinetics_sounds"])
    parser.add_argument(
        "raw", help="crema_d: folder with VideoFlash/ and AudioWAV/; kinetics_sounds: <class>/<video>.mp4"
    )
    parser.add_argument("out", help="output folder (the dataset.root of the loader)")
    parser.add_argument(
        "--lists",
        default=None,
        help="folder with the published split lists (crema_d: train.csv, test.csv; kinetics_sounds: "
        "my_train.txt, my_test.txt); default: a seeded split (crema_d by actor, kinetics_sounds per class)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split made without --lists")
    parser.add_argument("--test-fraction", type=fraction, default=0.1, help="test share of that split (0.1)")
    parser.add_argument("--fps", type=positive, default=1, help="frames kept per second (1: Image-01-FPS)")
    parser.add_argument("--workers", type=positive, default=1, help="clips decoded in parallel processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    ns = parser.parse_args(args)
    from mmrobust.prepare import prepare as run_prepare

    run_prepare(
        ns.dataset,
        ns.raw,
        ns.out,
        lists=ns.lists,
        seed=ns.seed,
        test_fraction=ns.test_fraction,
        fps=ns.fps,
        workers=ns.workers,
        progress=not ns.no_progress,
    )


def report(args: Sequence[str]) -> None:
    parser = ArgumentParser(prog="mmrobust report", description="Aggregate runs into one table per metric.")
    parser.add_argument("dirs", nargs="+", help="run or sweep directories holding results.json files")
    parser.add_argument("--out", default=None, help="output folder (default: the first directory)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--paper", default=None, help="stored paper table to compare with (default: eval.paper_table)")
    ns = parser.parse_args(args)
    from mmrobust.evaluation.paper_compare import write_paper_compare
    from mmrobust.evaluation.report import load_results, result_rows, write_report

    results = load_results(ns.dirs)
    rows = result_rows(results, ns.split)
    paths = write_report(rows, results[0]["modalities"], ns.out or ns.dirs[0])
    print(paths["markdown"].read_text())
    beside = write_paper_compare(results, rows, ns.out or ns.dirs[0], ns.paper)
    if beside is not None:
        print(beside.read_text())
        paths["paper_compare"] = beside
    from mmrobust.evaluation.corruption_report import print_corruption_report

    paths |= print_corruption_report(results, ns.out or ns.dirs[0])  # runs with a "corrupted" section
    print(f"saved: {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()

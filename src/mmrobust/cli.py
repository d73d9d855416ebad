"""``mmrobust`` command line.

mmrobust train [hydra overrides ...] [--multirun]    train + every-subset evaluation + report
mmrobust eval RUN_DIR|CHECKPOINT [--split test]      re-evaluate every subset
mmrobust report DIR [DIR ...] [--out DIR]            aggregate runs (mean ± std over seeds)
mmrobust data check [hydra overrides ...]            what is present, missing and expected
mmrobust analyze dmrnet RUN [RUN ...] [--out DIR]    DMRNet figures: σ² per subset, D_channel, α sweep
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mmrobust.errors import user_errors

COMMANDS = ("train", "eval", "report", "data", "analyze")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS and ("=" in command or command.startswith("-")):
        command, rest = "train", args  # a relaunched worker process gets the overrides only
    if command == "train":
        from mmrobust import hydra_app

        sys.argv = [hydra_app.__file__, *rest]
        hydra_app.train_app()
    elif command == "eval":
        parser = argparse.ArgumentParser(
            prog="mmrobust eval", description="Re-evaluate a run on every modality subset."
        )
        parser.add_argument("path", help="run directory or checkpoint file")
        parser.add_argument("--split", default="test", choices=["train", "val", "test"])
        parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/eval_SPLIT)")
        ns = parser.parse_args(rest)
        with user_errors():
            from mmrobust.experiment import evaluate

            evaluate(ns.path, ns.split, ns.out)
    elif command == "report":
        report(rest)
    elif command == "data":
        if not rest or rest[0] != "check":
            sys.exit("usage: mmrobust data check dataset=NAME [dataset.root=...]")
        with user_errors():
            from mmrobust.datacheck import check

            check(rest[1:])
    elif command == "analyze":
        with user_errors():
            from mmrobust.analysis import main as analyze

            analyze(rest)
    else:
        sys.exit(f"mmrobust: unknown command {command!r}; valid commands: {', '.join(COMMANDS)}")


def report(args: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="mmrobust report", description="Aggregate runs into one table per metric.")
    parser.add_argument("dirs", nargs="+", help="run or sweep directories holding results.json files")
    parser.add_argument("--out", default=None, help="output folder (default: the first directory)")
    parser.add_argument("--split", default="test")
    ns = parser.parse_args(args)
    with user_errors():
        from mmrobust.evaluation.report import load_results, result_rows, write_report

        results = load_results(ns.dirs)
        paths = write_report(result_rows(results, ns.split), results[0]["modalities"], ns.out or ns.dirs[0])
        print(paths["markdown"].read_text())
        print(f"saved: {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()

"""The real ``mmrobust`` command line, end to end: the console script in a subprocess (``python -m mmrobust``)
where a process of its own matters, the same entry point in process (the ``cli`` fixture) elsewhere."""

import json
import subprocess

import pytest
import torch

from mmrobust.engine.checkpoint import load_checkpoint
from tests.conftest import MMROBUST, TINY_CLI, run_cli

TINY = [
    "dataset=synthetic",
    *TINY_CLI,
]


def mmrobust(args, env, timeout=240):
    return subprocess.run([*MMROBUST, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_eval_and_report(tmp_path, cli_env, cli):
    runs = []
    for seed in (0, 1):
        run_dir = tmp_path / f"md{seed}"
        argv = ["train", *TINY, f"seed={seed}", f"hydra.run.dir={run_dir}"]
        out = mmrobust(argv, cli_env) if seed == 0 else cli(argv)  # the console script, then in process
        assert out.returncode == 0, out.stderr
        assert "| ● | ● | ● |" in out.stdout and "Average" in out.stdout and "Worst" in out.stdout
        runs.append(run_dir)
    results = json.loads((runs[0] / "results.json").read_text())
    assert list(results["metrics"]["test"]) == ["a", "b", "c", "a+b", "a+c", "b+c", "a+b+c"]
    assert results["config"]["trainer"]["max_epochs"] == 2  # the resolved config travels with the results

    out = cli(["eval", str(runs[0])])
    assert out.returncode == 0, out.stderr
    again = json.loads((runs[0] / "eval_test/results.json").read_text())
    assert again["metrics"]["test"] == results["metrics"]["test"]  # evaluation is reproducible from the run dir

    out = cli(["eval", str(runs[0] / "checkpoints/best.ckpt"), "--out", str(tmp_path / "ckpt_eval")])
    assert out.returncode == 0, out.stderr

    out = cli(["report", str(tmp_path / "md0"), str(tmp_path / "md1"), "--out", str(tmp_path / "report")])
    assert out.returncode == 0, out.stderr
    assert "mean ± std over 2 seeds" in out.stdout and " ± " in out.stdout
    for ext in ("md", "csv", "json", "tex"):
        assert (tmp_path / f"report/report.{ext}").is_file()
    assert (tmp_path / "report/report_heatmap.png").stat().st_size > 1000


@pytest.mark.slow
def test_multirun_sweep_with_customized_runner(tmp_path, cli):
    sweep = tmp_path / "sweep"
    out = cli(
        [
            "train",
            "--multirun",
            *TINY,
            "method=customized,full",
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert out.returncode == 0, out.stderr
    custom = json.loads((sweep / "customized/seed0/results.json").read_text())
    assert len(custom["metrics"]["test"]) == 7
    assert len(list((sweep / "customized/seed0/subsets").glob("*/checkpoints/best.ckpt"))) == 7
    out = cli(["report", str(sweep)])
    assert out.returncode == 0, out.stderr
    assert "| a | b | c | customized | full |" in out.stdout or "| a | b | c | full | customized |" in out.stdout


def test_user_errors_are_one_clear_line(tmp_path, capsys):
    """In process (the console script's own one-line errors: tests/errors/test_bad_inputs.py)."""

    def run(argv: list[str]) -> tuple[int, str]:
        code, _, err = run_cli(argv, capsys)
        return code, err

    cases = {
        "method=nope": "Could not find 'method/nope'",
        "+method.alpha=3": "method.alpha: unknown key; accepted keys: distribution",
        "trainer.max_epochs=many": "trainer.max_epochs",
        "model.encoder.name=vit": "unknown encoder 'vit'; valid encoder names: ",
        "trainer.batch_size=100000": "trainer.batch_size: 100000 is larger than the training split",
    }
    for override, message in cases.items():
        code, err = run(["train", *TINY, override, f"hydra.run.dir={tmp_path / 'x'}"])
        lines = [line for line in err.splitlines() if line.strip()]
        assert code != 0 and len(lines) == 1 and message in lines[0], (override, err)
    code, err = run(["data", "check", "dataset=manifest", f"dataset.root={tmp_path}", "dataset.modalities=[rgb]"])
    assert code == 2 and "manifest file" in err and "expected layout" in err


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_on_the_same_global_batch(tmp_path, cli_env, cli):
    common = [*TINY, "trainer.optimizer.name=sgd", "trainer.optimizer.lr=0.05", "trainer.scheduler.name=none"]
    single = cli(["train", *common, f"hydra.run.dir={tmp_path / 'one'}"])  # Fabric re-launches a DDP run's script:
    # the 2-process run below must be the console script, in a subprocess
    assert single.returncode == 0, single.stderr
    ddp = mmrobust(
        ["train", *common, "trainer.devices=2", "trainer.strategy=ddp", f"hydra.run.dir={tmp_path / 'two'}"],
        cli_env,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr
    a = load_checkpoint(tmp_path / "one/checkpoints/last.ckpt")
    b = load_checkpoint(tmp_path / "two/checkpoints/last.ckpt")
    assert a["step"] == b["step"] == 16  # 128 samples / global batch 16 × 2 epochs
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    ra = json.loads((tmp_path / "one/results.json").read_text())["metrics"]["test"]
    rb = json.loads((tmp_path / "two/results.json").read_text())["metrics"]["test"]
    assert ra.keys() == rb.keys()
    for s in ra:
        assert abs(ra[s]["accuracy"] - rb[s]["accuracy"]) <= 1 / 64 + 1e-9


def test_version_is_the_package_version(capsys):
    from importlib.metadata import version

    from mmrobust.cli import main

    main(["--version"])
    assert capsys.readouterr().out.strip() == f"mmrobust {version('mmrobust')}"


@pytest.mark.parametrize(
    "command",
    [
        ["eval"], ["report"], ["data"], ["data", "check"], ["analyze"], ["analyze", "dmrnet"], ["prepare"], ["predict"],
        ["export"],
    ],
)
def test_every_command_has_help(command, capsys):
    from mmrobust.cli import main

    try:
        main([*command, "--help"])
    except SystemExit as stop:  # argparse exits 0 after printing the help
        assert stop.code == 0
    out = capsys.readouterr()
    assert out.out.startswith("usage: mmrobust " + command[0]) and out.err == ""

"""Missing AND corrupted evaluation: the protocol on the real evaluator (fast), then through the real CLI in
process (slow): ``train`` with ``eval.corrupt``, ``eval RUN corrupt=gaussian:5,salt:10``, ``report``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from lightning.fabric import Fabric

from mmrobust.config import EvalCorruptConfig, TrainerConfig
from mmrobust.engine.trainer import Trainer
from mmrobust.evaluation.corrupted import corrupted_batches, evaluate_corrupted, merge_corrupted
from mmrobust.subsets import all_subsets, subset_from_names
from mmrobust.tasks import Classification
from tests.conftest import TINY_CLI, run_cli, tiny_dataset, tiny_model

MODALITIES = ("a", "b", "c")


def trainer(tmp_path, eval_batch_size: int) -> Trainer:
    cfg = TrainerConfig(eval_batch_size=eval_batch_size, batch_size=16, progress=False, tensorboard=False)
    return Trainer(cfg, Fabric(accelerator="cpu", devices=1), tmp_path, 0, task=Classification(3))


def scores(metrics) -> dict[int, dict[str, float]]:
    return {s: m.scores() for s, m in metrics.items()}


def test_corrupted_batches_change_exactly_the_chosen_samples_of_one_modality(tmp_path):
    ds = tiny_dataset("test")
    chosen = torch.zeros(len(ds), dtype=torch.bool)
    chosen[::3] = True
    clean = list(trainer(tmp_path, 8).eval_loader(ds))
    noisy = list(corrupted_batches(clean, "b", "gaussian", 10, chosen, seed=0))
    for before, after in zip(clean, noisy):
        changed = (after.inputs["b"] != before.inputs["b"]).any(dim=1)
        assert torch.equal(changed, chosen[before.index])
        for m in ("a", "c"):
            assert torch.equal(after.inputs[m], before.inputs[m])


def fitted_model():
    """The tiny model fitted for a few full-batch steps, so that its predictions depend on the inputs."""
    train = tiny_dataset("train")
    model = tiny_model(train)
    batch = next(iter(trainer(Path(), 64).eval_loader(train)))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(batch), batch.target).backward()
        opt.step()
    return model.eval()


def test_protocol_is_batch_size_independent_and_leaves_subsets_without_the_modality_unchanged(tmp_path):
    ds = tiny_dataset("test")
    model = fitted_model()
    subsets = all_subsets(3)
    protocol = EvalCorruptConfig(conditions=["gaussian:10"], modalities=["a"], fraction=0.5, seed=3)
    small, large = trainer(tmp_path, 5), trainer(tmp_path, 32)
    clean = scores(large.evaluate(model, ds, subsets))
    got = {c: scores(m) for c, m in evaluate_corrupted(small, model, ds, subsets, protocol).items()}
    again = {c: scores(m) for c, m in evaluate_corrupted(large, model, ds, subsets, protocol).items()}
    assert got == again and [(c.modality, c.kind, c.strength) for c in got] == [("a", "gaussian", 10.0)]
    with_a = [s for s in subsets if s & subset_from_names("a", MODALITIES)]
    for by_subset in got.values():
        assert {s: v for s, v in by_subset.items() if s not in with_a} == {
            s: v for s, v in clean.items() if s not in with_a
        }
    assert any(got[c][s] != clean[s] for c in got for s in with_a)  # the corruption does reach the model
    none = EvalCorruptConfig(conditions=["gaussian:10"], modalities=["a"], fraction=0.0)
    assert [scores(m) for m in evaluate_corrupted(small, model, ds, subsets, none).values()] == [clean]


def test_merge_keeps_other_conditions_of_the_same_protocol_and_replaces_another_protocol():
    def section(fraction, *conditions):
        return {
            "split": "test",
            "fraction": fraction,
            "seed": 0,
            "conditions": [
                {"modality": "a", "kind": k, "strength": s, "metrics": {"a": {"x": v}}} for k, s, v in conditions
            ],
        }

    merged = merge_corrupted(section(0.5, ("gaussian", 5, 1), ("salt", 10, 2)), section(0.5, ("gaussian", 5, 3)))
    assert [(c["kind"], c["metrics"]["a"]["x"]) for c in merged["conditions"]] == [("salt", 2), ("gaussian", 3)]
    assert merge_corrupted(section(0.5, ("salt", 10, 2)), section(0.3, ("gaussian", 5, 3))) == section(
        0.3, ("gaussian", 5, 3)
    )


# ------------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def drop_hydra_log_handlers() -> Iterator[None]:
    before = list(logging.root.handlers)
    yield
    for handler in [h for h in logging.root.handlers if h not in before]:
        logging.root.removeHandler(handler)


@pytest.mark.slow
def test_cli_train_eval_and_report_with_corrupted_inputs(tmp_path, capsys, drop_hydra_log_handlers):
    run = tmp_path / "run"
    train = ["train", "dataset=synthetic", *TINY_CLI, "trainer.max_epochs=1", "eval.corrupt.conditions=[gaussian:5]"]
    train += ["trainer.corrupt.kinds=[gaussian,salt]", "+trainer.corrupt.rates={a:1.0,b:0.0}"]  # training augmentation
    code, out, err = run_cli([*train, f"hydra.run.dir={run}"], capsys)
    assert code == 0, err
    trained = json.loads((run / "results.json").read_text())["corrupted"]
    assert trained["fraction"] == 0.5 and trained["split"] == "test"
    assert [(c["modality"], c["kind"]) for c in trained["conditions"]] == [(m, "gaussian") for m in MODALITIES]
    assert {c["corrupted_samples"] for c in trained["conditions"]} == {32}  # 50 % of the 64 test samples
    assert (run / "corrupted.md").is_file() and "Corrupted inputs" in out

    code, out, err = run_cli(["eval", str(run), "corrupt=gaussian:5,salt:10", "corrupt.modalities=[a,b]"], capsys)
    assert code == 0, err
    for name in ("corrupted.md", "corrupted.csv", "corrupted_accuracy.png"):
        assert (run / "eval_test" / name).stat().st_size > 0
    section = json.loads((run / "eval_test/results.json").read_text())["corrupted"]
    assert [(c["modality"], c["kind"], c["strength"]) for c in section["conditions"]] == [
        ("a", "gaussian", 5.0),
        ("a", "salt", 10.0),
        ("b", "gaussian", 5.0),
        ("b", "salt", 10.0),
    ]
    same = {c["modality"]: c["metrics"] for c in trained["conditions"]}
    assert section["conditions"][0]["metrics"] == same["a"]  # the same corrupted test set as after training
    merged = json.loads((run / "results.json").read_text())["corrupted"]["conditions"]
    assert len(merged) == 5  # c:gaussian 5 kept from training; a and b re-evaluated, salt added

    code, out, err = run_cli(["report", str(run), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    assert "one modality corrupted in 50 % of the samples" in out  # the summary is printed, the tables saved
    full = (tmp_path / "rep/corrupted.md").read_text()
    table = full[full.index("a corrupted in 50 % of the test samples") :]
    header = table.splitlines()[2]
    assert header.split("|")[1:-1] == [" a ", " b ", " c ", " clean ", " gaussian 5 ", " salt 10 "]
    assert "| ● | ○ | ○ |" in table and "| Average |" in table
    assert (tmp_path / "rep/corrupted_accuracy.png").is_file()

    for bad, pattern in [
        ("corrupt=gauss:5", "expected KIND:STRENGTH"),
        ("corrupt.fraction=2", "eval.corrupt.fraction"),
        ("corrupt=blur:1", "needs images"),
        ("corrupt.modalities=[z]", "unknown modality 'z'"),
        ("corrupt.level=3", "expected one of corrupt="),
    ]:
        code, _, err = run_cli(["eval", str(run), bad], capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and pattern in lines[0] and lines[0].startswith("mmrobust: "), err
    code, _, err = run_cli([*train[:-2], "trainer.corrupt.kinds=[blur]", f"hydra.run.dir={tmp_path / 'bad'}"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "trainer.corrupt.kinds: modality 'a'" in lines[0], err


def test_report_table_is_mean_and_std_over_seeds_in_the_dot_layout(tmp_path):
    from mmrobust.evaluation.corruption_report import write_corruption_report

    def result(seed, clean, noisy):
        metrics = {"a": {"accuracy": clean}, "b": {"accuracy": 0.5}, "a+b": {"accuracy": clean}}
        condition = {"modality": "a", "kind": "salt", "strength": 10.0, "corrupted_samples": 2}
        return {
            "method": "m",
            "seed": seed,
            "modalities": ["a", "b"],
            "metrics": {"test": metrics},
            "corrupted": {
                "split": "test",
                "fraction": 0.5,
                "seed": 0,
                "conditions": [condition | {"metrics": metrics | {"a": {"accuracy": noisy}}}],
            },
        }

    paths = write_corruption_report([result(0, 0.8, 0.6), result(1, 0.6, 0.2)], tmp_path)
    summary = paths["corrupted_summary"].read_text().splitlines()
    # subsets with a: seed 0 (a 0.6, a+b 0.8) -> 70, seed 1 (0.2, 0.6) -> 40 under salt; clean 80 and 60
    assert summary[2:5] == ["| method | clean | salt 10 |", "|---|--:|--:|", "| m | 70.00 ± 14.14 | 55.00 ± 21.21 |"]
    assert "| m | 70.00 ± 14.14 | 70.00 ± 14.14 |" in summary  # every modality present: a+b is not corrupted here
    text = paths["corrupted_markdown"].read_text()
    lines = text[text.index("### Accuracy (%): a corrupted") :].splitlines()
    assert lines[0] == "### Accuracy (%): a corrupted in 50 % of the test samples — m — mean ± std over 2 seeds"
    assert lines[2:5] == [
        "| a | b | clean | salt 10 |",
        "|:-:|:-:|--:|--:|",
        "| ● | ○ | 70.00 ± 14.14 | 40.00 ± 28.28 |",
    ]
    assert "| ○ | ● | 50.00 ± 0.00 | 50.00 ± 0.00 |" in lines
    assert paths["corrupted_plot"].stat().st_size > 0 and len(paths["corrupted_csv"].read_text().splitlines()) == 13


@pytest.mark.slow
def test_segmentation_runs_are_evaluated_with_corrupted_images(tmp_path, capsys):
    run = tmp_path / "seg"
    argv = [
        "train", "dataset=synthetic_rgbd", "model=seg_small", "dataset.size=[32,32]",
        "dataset.samples_per_split=[32,16,16]", "trainer.max_epochs=1", "trainer.batch_size=8",
        "trainer.progress=false", "eval.corrupt.conditions=[gaussian:10,blur:2,occlusion:30]", f"hydra.run.dir={run}",
    ]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    section = json.loads((run / "results.json").read_text())["corrupted"]
    assert {(c["modality"], c["kind"]) for c in section["conditions"]} == {
        (m, k) for m in ("rgb", "depth") for k in ("gaussian", "blur", "occlusion")
    }
    assert all("miou" in metrics for c in section["conditions"] for metrics in c["metrics"].values())
    assert "mIoU (%): one modality corrupted in 50 % of the samples" in out

"""The papers' printed tables stored as data, the table experiment configs, and the report beside the paper."""

import json
import statistics
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from mmrobust.api import compose_config
from mmrobust.cli import main
from mmrobust.evaluation.paper_compare import (
    compare,
    load_paper_table,
    markdown,
    paper_table_keys,
    paper_table_of,
    write_paper_compare,
)
from mmrobust.evaluation.report import result_rows
from mmrobust.experiment import to_run_config
from mmrobust.registry import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "src/mmrobust/configs"
KEYS = paper_table_keys()
METRICS = {"acer", "accuracy", "miou"}


def table_experiments() -> dict[str, str]:
    """``{experiment name: paper table key}`` of every experiment config that names a paper table."""
    out = {}
    for path in sorted((CONFIGS / "experiment").glob("*.yaml")):
        key = ((yaml.safe_load(path.read_text()) or {}).get("eval") or {}).get("paper_table")
        if key:
            out[path.stem] = key
    return out


def sweep(experiment: str) -> dict[str, list[str]]:
    params = yaml.safe_load((CONFIGS / "experiment" / f"{experiment}.yaml").read_text())["hydra"]["sweeper"]["params"]
    return {k: str(v).split(",") for k, v in params.items()}


def test_sixteen_tables_are_stored():
    assert len(KEYS) == 16 and {"dmrnet_table1_surf", "osmd_table3_surf_ir", "mmanet_table1_surf"} <= set(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_table_loads_with_dot_subsets_and_recomputed_averages(key):
    table = load_paper_table(key)
    n = len(table.modalities)
    assert table.metric in METRICS and table.direction in ("lower", "higher")
    assert (CONFIGS / "dataset" / f"{table.dataset}.yaml").is_file()
    assert table.subsets and len(set(table.subsets)) == len(table.subsets)
    for dots in table.subsets:
        assert len(dots) == n and set(dots) <= {"●", "○"} and "●" in dots
    assert any(m.ours for m in table.methods)
    for m in table.methods:
        assert set(m.values) <= set(table.subsets)
        assert m.values or table.partial  # a method without cells only in a partial table
        if len(table.subsets) > 1 and set(m.values) == set(table.subsets):
            assert m.recomputed_average == pytest.approx(statistics.fmean(m.values.values()), abs=5e-5)
        else:
            assert m.recomputed_average is None


def test_printed_cells_and_averages_that_do_not_add_up():
    t2 = load_paper_table("dmrnet_table2_cremad")
    ogm = t2.methods[0]
    assert (ogm.name, ogm.values["●○"], ogm.average) == ("OGM-MD", 59.13, 55.69)
    assert ogm.recomputed_average == pytest.approx(54.6067)  # (59.13 + 41.66 + 63.03) / 3, printed 55.69
    t3, t4 = load_paper_table("dmrnet_table3_surf"), load_paper_table("dmrnet_table4_surf")
    dmr3, dmr4 = t3.method("dmr"), t4.method("dmr")
    assert dmr3 and dmr4 and dmr3.values == dmr4.values  # the same +DMR cells, printed 4.63 and 4.66
    assert (dmr3.average, dmr4.average, dmr4.recomputed_average) == (4.63, 4.66, pytest.approx(4.6329))
    mma = load_paper_table("mmanet_table1_surf")
    assert [m.average for m in mma.methods] == [None, None] and mma.method("customized")
    assert load_paper_table("dmrnet_table6_surf").partial


def test_unknown_table_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown; valid tables: .*dmrnet_table1_surf"):
        load_paper_table("nope")
    with pytest.raises(ConfigError, match="eval.paper_table: expected one of"):
        to_run_config(compose_config(["eval.paper_table=nope"]))


def test_every_table_has_an_experiment_whose_sweep_names_its_methods():
    experiments = table_experiments()
    assert set(experiments.values()) == set(KEYS)
    for experiment, key in experiments.items():
        table, params = load_paper_table(key), sweep(experiment)
        ours = {m.ours for m in table.methods}
        for method in params.get("method", []):
            spec = yaml.safe_load((CONFIGS / "method" / f"{method}.yaml").read_text())
            assert spec["label"] in ours, f"{experiment}: {method} (label {spec['label']}) is not in {key}"


@pytest.mark.parametrize("experiment", sorted(table_experiments()))
def test_table_experiment_composes_and_validates(experiment):
    cfg = compose_config([f"experiment={experiment}", "dataset.root=/data/x"])
    run = to_run_config(cfg)
    table = load_paper_table(run.eval.paper_table)
    assert cfg.dataset.name == table.dataset
    if table.metric == "acer":
        assert run.eval.bona_fide_class == 1
    swept = sweep(experiment)
    for name, values in swept.items():  # swept method parameters give labels of the table (Tables 6, 7)
        if name.startswith("method."):
            ours = {m.ours for m in table.methods}
            for v in values:
                OmegaConf.update(cfg, name, yaml.safe_load(v))
                assert cfg.method.label in ours


# ----------------------------------------------------------------------------------------- the report
MODS = ["rgb", "depth", "ir"]
NAMES = ["rgb", "depth", "ir", "rgb+depth", "rgb+ir", "depth+ir", "rgb+depth+ir"]


def run_result(method, seed, acer, key="dmrnet_table1_surf"):
    return {
        "method": method,
        "seed": seed,
        "modalities": MODS,
        "metrics": {"test": {n: {"accuracy": 1 - a, "acer": a} for n, a in zip(NAMES, acer)}},
        "config": {"eval": {"paper_table": key}},
    }


RESULTS = [
    run_result("modality_dropout", 0, [0.10, 0.05, 0.15, 0.04, 0.06, 0.05, 0.02]),
    run_result("modality_dropout", 1, [0.12, 0.05, 0.15, 0.04, 0.06, 0.05, 0.02]),
    run_result("dmrnet", 0, [0.08, 0.02, 0.09, 0.01, 0.03, 0.01, 0.01]),
    run_result("joint", 0, [0.5] * 7),
]


def test_compare_sets_ours_beside_the_paper_with_both_averages():
    table = load_paper_table("dmrnet_table1_surf")
    c = compare(table, result_rows(RESULTS))
    assert c["columns"][3:7] == ["SF-MD (paper)", "modality_dropout (ours)", "DMRNet (paper)", "dmrnet (ours)"]
    assert c["rows"][0][:7] == ["●", "○", "○", "11.75", "11.00 ± 1.41", "8.23", "8.00"]
    printed, recomputed = c["rows"][-2], c["rows"][-1]
    md_avg = [statistics.fmean([10, 5, 15, 4, 6, 5, 2]), statistics.fmean([12, 5, 15, 4, 6, 5, 2])]
    assert printed[:5] == ["Average (paper: printed)", "", "", "7.52", f"{statistics.fmean(md_avg):.2f} ± 0.20"]
    assert recomputed[5] == "3.56"  # DMRNet's cells average 3.5557, printed 3.58
    assert "MMANet" in c["paper_only"] and c["ours_only"] == ["joint"]
    text = markdown(table, result_rows(RESULTS))
    assert "Beside the paper: DMRNet Table 1 (casia_surf, acer % ↓)" in text and "ShaSpec" in text


def test_report_cli_notices_the_paper_table(tmp_path, capsys):
    for i, r in enumerate(RESULTS):
        (tmp_path / f"run{i}").mkdir()
        (tmp_path / f"run{i}" / "results.json").write_text(json.dumps(r))
    main(["report", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Beside the paper: DMRNet Table 1" in out and "| ● | ○ | ○ | 11.75 | 11.00 ± 1.41 |" in out
    assert (tmp_path / "paper_compare.md").is_file()
    main(["report", str(tmp_path), "--paper", "mmanet_table1_surf", "--out", str(tmp_path / "mma")])
    assert "Customized" in (tmp_path / "mma" / "paper_compare.md").read_text()


def test_runs_of_different_tables_or_modalities_are_refused(tmp_path):
    mixed = [RESULTS[0], run_result("dmrnet", 0, [0.1] * 7, key="dmrnet_table3_surf")]
    with pytest.raises(ConfigError, match="different paper tables .*--paper"):
        paper_table_of(mixed)
    assert paper_table_of([{"config": {"eval": {}}}]) is None
    two = [{**RESULTS[0], "modalities": ["audio", "visual"]}]
    with pytest.raises(ConfigError, match="has modalities \\['rgb', 'depth', 'ir'\\] but the runs have"):
        write_paper_compare(two, [], tmp_path, "dmrnet_table1_surf")


# ------------------------------------------------------------------ each table config trains one epoch (slow)
def tiny_run(experiment: str, root_dir: Path) -> list[str]:
    """The fake layout of the experiment's dataset under ``root_dir`` and the overrides of a tiny one-epoch run."""
    from tests.data.fake_av_layouts import make_crema_d, make_kinetics_sounds
    from tests.data.fake_face_layouts import TINY_FACE, make_casia_surf, make_cefa
    from tests.data.fake_seg_layouts import make_nyuv2, make_sunrgbd

    dataset = load_paper_table(table_experiments()[experiment]).dataset
    common = ["trainer.max_epochs=1", "trainer.progress=false", "trainer.tensorboard=false"]
    if dataset in ("casia_surf", "cefa"):
        root = (make_casia_surf if dataset == "casia_surf" else make_cefa)(root_dir / dataset)
        tiny = [o for o in TINY_FACE if not o.startswith("model=")]
    elif dataset in ("crema_d", "kinetics_sounds"):
        root = (make_crema_d if dataset == "crema_d" else make_kinetics_sounds)(root_dir / dataset)
        tiny = [*common, "dataset.val_fraction=0.5", "dataset.image_size=16", "trainer.batch_size=6"]
        tiny += ["model.encoder.width=8", "model.encoders.audio.width=8"]
    else:
        size = [(24, 32)] * 2
        root = (
            make_nyuv2(root_dir / dataset, 4, 2, (32, 32))
            if dataset == "nyuv2"
            else make_sunrgbd(root_dir / dataset, 4, 2, size)
        )
        tiny = [*common, "dataset.size=[32,32]", "dataset.augment=null", "trainer.batch_size=2"]
    return [f"dataset.root={root}", *tiny]


# Every table config trains one epoch on the fake layouts (a few seconds each on an idle 2-core machine).
CHEAP_METHOD = {
    "mmanet_table1_surf": "modality_dropout",
    "dmrnet_table2_cremad": "dmrnet",
    "dmrnet_table2_ks": "dmrnet",
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(table_experiments()))
def test_table_config_trains_one_epoch_on_the_fake_layout(experiment, tmp_path, capsys):
    method = CHEAP_METHOD.get(experiment) or sweep(experiment).get("method", [None])[0]
    run_dir = tmp_path / "run"
    argv = ["train", f"experiment={experiment}", *tiny_run(experiment, tmp_path), f"hydra.run.dir={run_dir}"]
    main(argv + ([f"method={method}"] if method else []))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["eval"]["paper_table"] == table_experiments()[experiment]
    capsys.readouterr()
    main(["report", str(run_dir)])
    assert f"Table {load_paper_table(table_experiments()[experiment]).table}" in capsys.readouterr().out

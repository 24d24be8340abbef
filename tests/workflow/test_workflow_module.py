"""The workflow's logic (mokd/workflow/) without Snakemake: job settings, table and figure specs, the
registry of tables and figures, named targets and launch options."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mokd.config import ConfigError, validate
from mokd.workflow import configs, figures, settings, specs, targets
from mokd.workflow.launch_args import gpu_resource, workflow_launch_args
from mokd.workflow.matrix import Matrix
from mokd.workflow.table_specs import TABLES, Body, cell, table

REPO = Path(__file__).resolve().parents[2]
PAPER_TABLES = ["t1", "t2", "t3", "t4", "t5", "t6", "s1", "s2", "s3"]


def load(name: str, **overrides: Any) -> dict[str, Any]:
    return configs.load_workflow_config([f"config/{name}.yaml"], overrides or None, root=REPO)


@pytest.fixture(scope="module")
def test_config() -> dict[str, Any]:
    return load("test")


@pytest.fixture()
def m(test_config: dict[str, Any]) -> Matrix:
    return Matrix(copy.deepcopy(test_config))


# ---------------------------------------------------------------------------------- job settings
def test_pair_and_baseline_pretrain_configs(m: Matrix) -> None:
    pair = settings.pretrain_config(m, "mokd_r50_vit_s")
    assert [x["name"] for x in pair["models"]] == ["r50", "vit_s"]
    assert [x["lambda"] for x in pair["models"]] == [1.0, 0.1]
    assert pair["t_head"]["dim"] == m.models["vit_s"]["width"]  # D is the ViT's width
    assert pair["crops"]["mean"] == m.config["normalization"]["mean"]
    dino = settings.pretrain_config(m, "dino_r50")
    assert [x["lambda"] for x in dino["models"]] == [1.0]
    assert dino["losses"]["self_thead"] is dino["losses"]["cross_mlp"] is dino["losses"]["cross_thead"] is False
    validate(pair, "pretrain"), validate(dino, "pretrain")


def test_an_experiments_overrides_and_dataset(m: Matrix) -> None:
    cfg = settings.pretrain_config(m, "in100_cm")
    assert cfg["losses"]["self_thead"] is False and cfg["losses"]["cross_thead"] is False
    assert cfg["data"] == m.dataset_spec("pretrain_100")
    assert "dataset" not in cfg and "lambda" not in cfg  # matrix keys are not pre-training settings


def test_a_wrong_pretrain_key_names_the_workflow_key(m: Matrix) -> None:
    settings.check_pretrain_configs(m)
    m.config["families"]["vit"]["optimizer"]["lrr"] = 1
    with pytest.raises(ConfigError, match=r"config key 'families\.vit\.optimizer\.lrr'.*experiment '"):
        settings.check_pretrain_configs(m)


def test_protocol_settings(m: Matrix) -> None:
    knn = settings.protocol_settings(m, "knn", "r18")
    assert knn["scale"] == "test" and knn["feature_cache"] == "results/test/cache/features"
    assert knn["expected_backbone"] == m.models["r18"]["backbone"] and knn["mean"] == m.config["normalization"]["mean"]
    for key, ds in m.protocols["knn"]["datasets"].items():
        assert knn[key] == m.dataset_spec(ds)
    detect = settings.protocol_settings(m, "detection", "r50")
    assert "mean" not in detect and "feature_cache" not in detect and "expected_backbone" not in detect
    assert "expected_backbone" not in settings.protocol_settings(m, "knn")


def test_matrix_check_names_the_key(m: Matrix) -> None:
    m.check()
    m.config["experiments"]["mokd_r50_vit_s"]["models"] = ["r50", "vit_x"]
    with pytest.raises(ConfigError, match=r"config key 'experiments\.mokd_r50_vit_s\.models': unknown model 'vit_x'"):
        m.check()


def test_evaluation_groups_and_the_plan_of_a_group(m: Matrix) -> None:
    """The test scale inherits the default's groups; a group's plan is each protocol's own job settings."""
    assert m.evaluation_groups == {"features": ["knn", "linear"], "features_100": ["knn_100", "linear_100"],
                                   "semi": ["semi1", "semi10"], "transfer": ["cifar10", "cifar100"]}
    # knn_probe(_100) (the held-out probe splits of benchmarks/learning_probe.py) are in no group; no table asks for them
    assert m.ungrouped_protocols() == ["detection", "knn_probe", "knn_probe_100"]
    plan = json.loads(settings.group_plan(m, ["knn", "linear"], "dino_r18", ["r18"], 1))
    assert [(p["protocol"], p["command"], p["out"], p["checkpoint"]) for p in plan] == [
        ("knn", "knn", m.metrics("dino_r18", "r18", "knn", 1), m.teacher("dino_r18", "r18", 1)),
        ("linear", "linear", m.metrics("dino_r18", "r18", "linear", 1), m.teacher("dino_r18", "r18", 1))]
    assert plan[1]["settings"] == settings.protocol_settings(m, "linear", "r18")
    # a pair's job: each teacher in turn, each with its own settings (expected backbone) and files
    pair = json.loads(settings.group_plan(m, ["knn", "linear"], "mokd_r50_vit_s", m.run_roles("mokd_r50_vit_s"), 0))
    assert [(p["protocol"], p["checkpoint"]) for p in pair] == [
        (p, m.teacher("mokd_r50_vit_s", r, 0)) for r in ("r50", "vit_s") for p in ("knn", "linear")]
    assert pair[3]["settings"] == settings.protocol_settings(m, "linear", "vit_s")
    assert m.run_roles("random_r50") == ["r50"] and m.run_roles("dino_r18") == ["r18"]
    assert "mokd_r50_vit_s" in m.pair_experiments() and "dino_r18" not in m.pair_experiments()
    runs = m.single_model_runs()
    assert "dino_r18" in runs and "random_r50" in runs and not set(runs) & set(m.pair_experiments())
    assert set(runs) | set(m.pair_experiments()) == set(m.experiments) | {m.random_run(r) for r in m.models}
    none = Matrix(load("test", scale={"evaluation_groups": None}))
    assert none.evaluation_groups == {} and none.ungrouped_protocols() == sorted(none.protocols)
    one_off = Matrix(load("test", scale={"evaluation_groups": {"semi": []}}))
    assert "semi" not in one_off.evaluation_groups and "semi1" in one_off.ungrouped_protocols()
    assert Matrix(load("paper")).evaluation_groups == {}


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"features": ["knn", "knn_200"]}, "config key 'scale.evaluation_groups.features': unknown protocol 'knn_200'"),
        ({"semi": ["semi1", "knn"]}, "config key 'scale.evaluation_groups.semi': protocol 'knn' is already in group 'features'"),
        ({"detection": ["detection"]}, "config key 'scale.evaluation_groups.detection': a group's name must not be a protocol's"),
    ],
)
def test_a_wrong_evaluation_group_names_its_key(groups: dict, message: str) -> None:
    m = Matrix(load("test", scale={"evaluation_groups": groups}))
    with pytest.raises(ConfigError) as err:
        m.check()
    assert message in str(err.value)


def test_paths_and_dataset_inputs(m: Matrix) -> None:
    assert m.teacher("dino_r18", "r18", 0) == "results/test/pretrain/dino_r18/seed0/export/teacher_r18.pt"
    assert m.metrics("dino_r18", "r18", "knn", 2) == "results/test/eval/dino_r18/seed2/r18/knn.json"
    assert m.parse_metrics(m.metrics("random_r18", "r18", "knn", 2)) == ("random_r18", 2, "r18", "knn")
    assert m.random_role("random_r18") == "r18" and m.random_role("dino_r18") is None
    assert m.protocol_inputs("knn") == [m.prepared_marker("fashion_mnist")]
    assert m.pair_key("mokd_r50_vit_s") == "R50-ViT-S" and m.pair_label("mokd_r50_vit_s") == "R50–ViT-S"


# ------------------------------------------------------------------------------------- tables
@pytest.mark.parametrize("scale", ["test", "default", "paper"])
def test_every_table_of_every_scale_builds(scale: str) -> None:
    m = Matrix(load(scale))
    assert list(m.config["tables"]) == PAPER_TABLES == list(TABLES)
    for t in TABLES:
        spec = specs.table_spec(m, t, "v0")
        assert spec["id"] == t and spec["title"] == TABLES[t].title and spec["footer"]["code_version"] == "v0"
        columns = {c["key"] for c in spec["columns"]}
        for row in spec["rows"]:
            assert set(row["cells"]) <= columns
        files = specs.table_inputs(m, t)
        assert files and all(f.startswith(f"{m.results}/eval/") for f in files)


def test_table_rows_read_the_right_metrics(m: Matrix) -> None:
    t1 = specs.table_spec(m, "t1", "v0")
    row = next(r for r in t1["rows"] if r["key"] == "R50@R50-ViT-S")
    assert row["cells"]["knn_dino"]["metrics"] == [m.metrics("dino_r50", "r50", "knn", 0)]
    assert row["cells"]["knn_mokd"]["metrics"] == [m.metrics("mokd_r50_vit_s", "r50", "knn", 0)]
    assert row["cells"]["knn_mokd"]["reference"]["metrics"] == [m.metrics("random_r50", "r50", "knn", 0)]
    assert {"key": "knn_gain", "label": "knn Δ", "minus": ["knn_mokd", "knn_dino"]} in t1["derived"]
    s3 = specs.table_spec(m, "s3", "v0")
    assert s3["decimals"] == 2 and m.cost_metrics() in specs.table_inputs(m, "s3")
    assert specs.cost_inputs(m) == [m.export_dir(e, 0) for e in ["dino_r50", "dino_vit_s", "mokd_r50_vit_s"]]


@pytest.mark.parametrize("where, value, message", [
    ("protocols.linear.settings", {"epoch": 3},
     "config key 'protocols.linear.settings.epoch': unknown key(s) ['epoch'] (did you mean 'epochs'?)"),
    ("protocols.linear.settings", {"epochs": -1}, "config key 'protocols.linear.settings.epochs' must be >= 1, got -1"),
    ("protocols.semi1.settings", {"subset": {"fraction": 2}},
     "config key 'protocols.semi1.settings.subset.fraction' must be <= 1, got 2"),
    ("protocols.detection.settings", {"iteratoins": 5}, "(did you mean 'iterations'?)"),
    ("protocols.knn.settings", {"ks": [0]}, "config key 'protocols.knn.settings.ks[0]' must be >= 1, got 0"),
    ("figures.f4_tsne.settings", {"perplexity": 0}, "config key 'figures.f4_tsne.settings.perplexity' must be > 0"),
    ("figures.f5_attention.settings", {"n_image": 8}, "(did you mean 'n_images'?)"),
])
def test_evaluation_settings_are_checked_before_any_job(where: str, value: dict[str, Any], message: str) -> None:
    """A protocol's or figure's setting is checked against its command's schema when the workflow is read,
    naming the full key: a misspelled or out-of-range setting no longer fails in its job after pre-training."""
    section, name, _ = where.split(".")
    config = load("test")
    config[section][name]["settings"].update(value)
    with pytest.raises(ConfigError) as err:
        settings.check_evaluation_settings(Matrix(config))
    assert message in str(err.value)
    settings.check_evaluation_settings(Matrix(load("test")))
    settings.check_evaluation_settings(Matrix(load("paper")))


def test_a_valid_coco_folder_is_checked_as_a_coco_set(tmp_path: Path) -> None:
    """A user's COCO path (root only; the paper config says `name: coco`) is checked as a COCO folder."""
    coco = tmp_path / "coco"
    for split in ("train2017", "val2017"):
        (coco / split).mkdir(parents=True)
        (coco / split / "000000000001.jpg").write_bytes(b"")
        (coco / "annotations").mkdir(exist_ok=True)
        (coco / "annotations" / f"instances_{split}.json").write_text('{"images": [], "annotations": [], "categories": []}')
    config = load("paper", datasets={"coco": {"spec": {"root": str(coco)}}})
    assert config["datasets"]["coco"]["spec"] == {"name": "coco", "root": str(coco)}
    problems = configs.missing_user_datasets({"coco": config["datasets"]["coco"]})
    assert problems == []
    (coco / "annotations" / "instances_val2017.json").unlink()
    problems = configs.missing_user_datasets({"coco": config["datasets"]["coco"]})
    assert len(problems) == 1 and problems[0].startswith("dataset 'coco' (val): COCO path") and "instances_val2017.json" in problems[0]


def test_simclr_split_files_are_checked_before_any_job(tmp_path: Path) -> None:
    """The paper scale's semi-supervised subsets are SimCLR's split files: a missing one is named with its key."""
    paper = load("paper")
    problems = configs.missing_protocol_files(paper["protocols"])
    assert [p.split(":")[0] for p in problems] == ["protocol 'semi1'", "protocol 'semi10'"]
    assert "/datasets/imagenet/splits/1percent.txt not found (protocols.semi1.settings.subset.file_list" in problems[0]
    split = tmp_path / "1percent.txt"
    split.write_text("n01440764_10026.JPEG\n")
    paper["protocols"]["semi1"]["settings"]["subset"]["file_list"] = str(split)
    assert len(configs.missing_protocol_files(paper["protocols"])) == 1


def test_linear_cells_say_what_they_report(m: Matrix) -> None:
    """The paper scale reports the best of the evaluations every 5 epochs (authors), the CPU scales the last
    epoch: each table with linear cells says which, once per linear protocol; a k-NN-only table says nothing."""
    paper = specs.table_spec(Matrix(load("paper")), "t1", "v0")["notes"]
    assert [n for n in paper if n.startswith("Linear probe")] == [
        "Linear probe (linear): the best val top-1 of the evaluations every 5 epochs, as the authors' eval_linear.py "
        "reports it (the last epoch's is top1_last in each metrics file)."]
    test = specs.table_spec(m, "t1", "v0")["notes"]
    assert any(n.startswith("Linear probe (linear): the last epoch's val top-1") for n in test)
    assert not any(n.startswith("Linear probe") for n in specs.table_spec(m, "t5", "v0")["notes"])


def test_every_cell_runs_per_seed_beside_its_random_initialisation() -> None:
    m = Matrix(load("test", scale={"seeds": [3, 1]}))
    row = next(r for r in specs.table_spec(m, "t1", "v0")["rows"] if r["key"] == "R50@R50-ViT-S")
    cell = row["cells"]["linear_mokd"]
    assert cell["join"] == "mean" and cell["metrics"] == [m.metrics("mokd_r50_vit_s", "r50", "linear", s) for s in (3, 1)]
    assert cell["reference"]["metrics"] == [m.metrics("random_r50", "r50", "linear", s) for s in (3, 1)]
    files = specs.table_inputs(m, "t1")
    assert m.metrics("random_vit_t", "vit_t", "knn", 1) in files and m.metrics("dino_r18", "r18", "knn", 3) in files
    assert "mean ± std (n) over seeds 3, 1" in specs.table_spec(m, "t1", "v0")["notes"][0]
    s3 = specs.table_spec(m, "s3", "v0")  # time, memory and LP of the first seed's runs
    assert all("seed3" in f for f in specs.table_inputs(m, "s3") if "/eval/" in f and "cost" not in f)
    assert any("seed 3" in n for n in s3["notes"])
    paper = Matrix(load("paper"))  # one seed, no random reference at the paper scale
    row = specs.table_spec(paper, "t1", "v0")["rows"][0]
    assert paper.seeds == [0] and all("reference" not in c for c in row["cells"].values())


def test_a_table_names_the_runs_whose_teachers_its_cells_read() -> None:
    """The spec's `runs` (what marks a cell from a collapsed teacher): every pre-trained run and seed of
    the cells, with its log, K, collapse_warning and teachers; never a random initialisation."""
    from mokd.tables.build import validate_spec

    m = Matrix(load("test", scale={"seeds": [3, 1]}))
    spec = specs.table_spec(m, "t1", "v0")
    runs = {(r["name"], r["seed"]): r for r in spec["runs"]}
    exps = ["dino_r50", "mokd_r50_vit_s", "dino_vit_s", "mokd_r50_r18", "dino_r18", "mokd_vit_s_vit_t", "dino_vit_t"]
    assert set(runs) == {(e, s) for e in exps for s in (3, 1)}  # t1's pairs and baselines, no random_<model>
    assert runs[("dino_r50", 1)] == {
        "name": "dino_r50", "seed": 1, "log": f"{m.results}/pretrain/dino_r50/seed1/log.jsonl",
        "out_dim": m.config["pretrain"]["out_dim"], "collapse_warning": 0.98,
        "models": {"r50": {"label": "R50", "teacher": m.teacher("dino_r50", "r50", 1)}}}
    assert list(runs[("mokd_r50_vit_s", 3)]["models"]) == ["r50", "vit_s"]
    assert validate_spec(spec)["runs"] == spec["runs"]
    # The table job depends on those runs' exports (their logs are complete then), and on no other run.
    assert specs.table_run_exports(m, "t1") == sorted(m.export_dir(e, s) for e, s in runs)
    s2 = specs.table_spec(m, "s2", "v0")  # S2 reads only the T-Head depth variants
    assert {r["name"] for r in s2["runs"]} == set(m.config["tables"]["s2"]["depths"].values())


def test_random_initialisation_runs_are_their_models_dino_config(m: Matrix) -> None:
    rand = settings.pretrain_config(m, "random_r50", 4)
    assert rand == settings.pretrain_config(m, "dino_r50", 4) and rand["seed"] == 4
    assert settings.pretrain_config(m, "mokd_r50_vit_s")["seed"] == m.first_seed == 0


def test_seeds_are_the_scales_not_a_pretrain_key(m: Matrix) -> None:
    m.config["pretrain"]["seed"] = 1
    with pytest.raises(ConfigError, match=r"config key 'pretrain\.seed'.*scale\.seeds"):
        m.check()
    with pytest.raises(ConfigError, match=r"scale\.seeds"):
        load("test", scale={"seeds": []})


def test_a_scale_may_build_only_some_tables_and_figures() -> None:
    from mokd.workflow import report

    m = Matrix(load("test", scale={"tables": ["t1"], "figures": ["f4_tsne"]}))
    assert targets.all_targets(m.config) == [*targets.table_files(m.results, "t1"),
                                             *targets.figure_files(m.results, "f4_tsne")]
    runs = report.pretrained_runs(m)  # the training curves show only what is built
    assert "mokd_r50_vit_s" in runs and "in100_mokd" not in runs and "dino_r34" not in runs
    assert "table_t2" in targets.named_targets(m.results)  # the others stay reachable by name
    m.config["scale"]["tables"] = ["t9"]
    with pytest.raises(ConfigError, match=r"config key 'scale\.tables': unknown table 't9'"):
        m.check()


def test_a_table_hash_changes_only_with_what_it_shows(m: Matrix) -> None:
    before = {t: specs.table_spec(m, t, "v0")["footer"]["config_hash"] for t in ("s2", "t5")}
    m.config["experiments"]["in100_mokd_depth1"]["epochs"] = 99  # shown in S2 only
    after = {t: specs.table_spec(m, t, "v0")["footer"]["config_hash"] for t in ("s2", "t5")}
    assert after["s2"] != before["s2"] and after["t5"] == before["t5"]


def test_a_missing_baseline_is_a_config_error(m: Matrix) -> None:
    del m.config["experiments"]["dino_r50"]
    with pytest.raises(ConfigError, match="DINO baseline 'dino_r50'"):
        specs.table_inputs(m, "t1")


def test_the_schema_allows_exactly_the_registered_tables(test_config: dict[str, Any]) -> None:
    schema = configs.workflow_schema(root=REPO)
    assert list(schema["properties"]["tables"]["properties"]) == list(TABLES)
    with pytest.raises(ConfigError, match=r"config key 'tables\.t7': unknown key.*allowed keys here"):
        load("test", tables={"t7": {"pairs": []}})


@pytest.fixture()
def extra_table() -> Iterator[str]:
    """A table registered for one test (what adding a table to table_specs.py does)."""

    @table("x1", "Table X1: R18 k-NN", "experiment, protocol")
    def x1(m: Matrix, t: dict[str, Any]) -> Body:
        rows = [{"key": "R18", "label": "R18", "cells": {"knn": cell(m, t["experiment"], "r18", t["protocol"])}}]
        return Body([("knn", "k-NN")], rows, ["r18"])

    yield "x1"
    del TABLES["x1"]


def test_adding_a_table_is_its_builder_and_its_config_entry(extra_table: str) -> None:
    m = Matrix(load("test", tables={extra_table: {"experiment": "dino_r18", "protocol": "knn"}}))
    assert specs.table_inputs(m, extra_table) == [m.metrics("dino_r18", "r18", "knn", 0),
                                                  m.metrics("random_r18", "r18", "knn", 0)]
    assert specs.table_spec(m, extra_table, "v0")["title"] == "Table X1: R18 k-NN"
    assert "table_x1" in targets.named_targets(m.results)
    assert f"{m.results}/tables/table_x1.md" in targets.all_targets(m.config)
    with pytest.raises(ValueError, match="registered twice"):
        table(extra_table, "again", "")(TABLES[extra_table].build)


# ---------------------------------------------------------------------------- figures, targets
def test_figure_members_and_settings(m: Matrix) -> None:
    members = figures.figure_members(m, "f4_tsne")
    assert [(e, r) for e, r, _ in members] == [("mokd_r50_vit_s", "r50"), ("mokd_r50_vit_s", "vit_s"),
                                               ("dino_r50", "r50"), ("dino_vit_s", "vit_s")]
    s = figures.figure_settings(m, "f5_attention")
    assert figures.figure_kind("f5_attention") == "attn-distance" and figures.figure_kind("f4_tsne") == "tsne"
    assert s["methods"][0] == "DINO" and set(s["methods"][1:]) == {"MOKD"}
    assert len(s["labels"]) == len(m.config["figures"]["f5_attention"]["models"]) and s["scale"] == "test"


def test_named_targets_are_the_paper_tables_and_figures(test_config: dict[str, Any]) -> None:
    named = targets.named_targets("results/x")
    assert list(named) == [f"table_{t}" for t in PAPER_TABLES] + ["figure_f4", "figure_fs1", "figure_f5", "figure_fs2"]
    assert named["table_s2"] == ["results/x/tables/table_s2.md", "results/x/tables/table_s2.tex"]
    assert named["figure_f5"] == ["results/x/figures/f5_attention.png", "results/x/figures/f5_attention.pdf"]
    assert set(figures.FIGURES.values()) == set(test_config["figures"])
    every = targets.all_targets(test_config)
    assert {f for files in named.values() for f in files} == {f.replace("results/test", "results/x") for f in every}


# ------------------------------------------------------------------------------ launch options
def test_workflow_launch_options() -> None:
    """config["launch"] -> `mokd pretrain` options; unset sizes from resources.pretrain."""
    from mokd import launch

    res = {"threads": 10, "gpus": 8, "mem_mb": 480000, "runtime": 10080}
    unset = {"nodes": 1, "gpus_per_node": None, "cpus_per_task": None, "mem_gb": None, "timeout_min": None,
             "max_num_timeout": 3, "partition": None, "account": None}
    assert workflow_launch_args({**unset, "pretrain": "inprocess"}, res) == ""
    args = workflow_launch_args({**unset, "pretrain": "slurm", "partition": "gpu a", "timeout_min": 2880}, res)
    assert args == ("--launcher slurm --nodes 1 --gpus-per-node 8 --cpus-per-task 10 --timeout-min 2880 "
                    "--max-num-timeout 3 --mem-gb 480 --partition 'gpu a'")
    small = {"threads": 1, "mem_mb": 4000, "runtime": 60}
    local = workflow_launch_args({**unset, "pretrain": "submitit-local"}, small)
    assert "--gpus-per-node 0 --cpus-per-task 1 --timeout-min 10080" in local  # no time limit to speak of locally
    parser = argparse.ArgumentParser()
    launch.add_arguments(parser)
    parsed = parser.parse_args(args.replace("'gpu a'", "gpu_a").split())
    assert (parsed.gpus_per_node, parsed.mem_gb, parsed.partition) == (8, 480.0, "gpu_a")
    assert gpu_resource(res) == {"gpu": 8} and gpu_resource({"threads": 1}) == {} and gpu_resource({"gpus": 0}) == {}


# --------------------------------------------------------------------------------- benchmarks
def test_benchmarks_build_the_workflows_configs(test_config: dict[str, Any]) -> None:
    """benchmarks/workflow_config.py uses the same code: the same config for a matrix experiment."""
    from benchmarks import workflow_config as bench

    m = Matrix(test_config)
    for exp in ("mokd_r50_vit_s", "dino_r18", "mokd_r50_r18"):
        expected = validate(settings.pretrain_config(m, exp), "pretrain")
        assert bench.pretrain_config(test_config, list(m.experiments[exp]["models"])) == expected
    knn = bench.protocol_settings(test_config, "knn", "/tmp/cache")
    assert knn == {**settings.protocol_settings(m, "knn"), "feature_cache": "/tmp/cache"}


# ---------------------------------------------------------------------------------- report items
def test_curves_show_every_pretrained_run_with_its_labels(m: Matrix) -> None:
    from mokd.workflow import report

    runs = report.pretrained_runs(m)
    read = {part for t in m.config["tables"] for f in specs.table_inputs(m, t) for part in Path(f).parts} & set(m.experiments)
    assert set(runs) >= read and runs == [e for e in m.experiments if e in set(runs)]
    curves = report.curves_settings(m)
    assert curves["scale"] == m.scale and [r["name"] for r in curves["runs"]] == runs
    by_name = {r["name"]: r for r in curves["runs"]}
    assert by_name["mokd_r50_vit_s"]["title"] == "MOKD R50–ViT-S"
    assert by_name["dino_r50"]["title"] == "DINO R50" and by_name["dino_r50"]["models"] == {"r50": "R50"}
    assert by_name["dino_r50"]["log"] == f"{m.results}/pretrain/dino_r50/seed0/log.jsonl"
    assert by_name["dino_r50"]["out_dim"] == m.config["pretrain"]["out_dim"]
    assert by_name["dino_r50"]["collapse_warning"] == 0.98  # the pretrain schema's default


def test_attention_figure_panels_are_the_config_labels(m: Matrix) -> None:
    from mokd.workflow import report

    attention = [f for f in m.config["figures"] if figures.figure_kind(f) == "attn-distance"]
    assert attention
    for fig in attention:
        panels = report.shown_figure_settings(m, fig)["panels"]
        assert panels == [m.label(member[1]) for member in figures.figure_members(m, fig)]
        assert all("_patch" not in p for p in panels)  # not timm architecture names

"""How the workflow's config is made (mokd/workflow/configs.py): base chains, layering, overrides."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from mokd.config import ConfigError, load_yaml
from mokd.workflow.configs import (
    load_workflow_config,
    pretrain_key_origin,
    resolve_config,
    typed_values,
)
from mokd.workflow.matrix import Matrix
from mokd.workflow.settings import check_pretrain_configs, pretrain_settings

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the workflow's relative paths (config/..., base:) are the repository's


def test_a_file_with_only_base_is_that_base(tmp_path: Path) -> None:
    """`base: config/test.yaml` and nothing else is the test scale, not the default one."""
    only_base = write(tmp_path / "only_base.yaml", {"base": "config/test.yaml"})
    assert load_workflow_config([only_base]) == load_workflow_config(["config/test.yaml"])
    assert load_workflow_config([only_base])["scale"]["results"] == "results/test"


def test_a_small_override_file_changes_only_what_it_says(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine.yaml", {"base": "config/test.yaml", "experiments": {"dino_r34": {"epochs": 20}}})
    cfg, test = load_workflow_config([mine]), load_workflow_config(["config/test.yaml"])
    assert cfg["scale"]["name"] == "test" and cfg["experiments"]["dino_r34"]["epochs"] == 20
    del cfg["experiments"]["dino_r34"]["epochs"]
    assert cfg == test


def test_several_config_files_merge_in_order(tmp_path: Path) -> None:
    """Snakemake's own layering: --configfile config/test.yaml --configfile mine.yaml."""
    mine = write(tmp_path / "mine.yaml", {"experiments": {"dino_r34": {"epochs": 20}}, "pretrain": {"epochs": 3}})
    cfg = load_workflow_config(["config/test.yaml", mine])
    assert cfg["scale"]["name"] == "test"
    assert cfg["experiments"]["dino_r34"]["epochs"] == 20 and cfg["pretrain"]["epochs"] == 3
    assert cfg["pretrain"]["batch_size"] == load_workflow_config(["config/test.yaml"])["pretrain"]["batch_size"]


def test_without_a_named_scale_the_default_is_the_base(tmp_path: Path) -> None:
    assert load_workflow_config([]) == load_workflow_config(["config/default.yaml"])
    mine = write(tmp_path / "mine.yaml", {"scale": {"results": str(tmp_path / "r")}})
    cfg = load_workflow_config([mine])
    assert cfg["scale"]["name"] == "default" and cfg["scale"]["results"] == str(tmp_path / "r")


def test_overrides_come_last_and_are_typed_like_yaml() -> None:
    """`--config` values: Snakemake leaves the values inside a mapping as strings ('1e-3', '2')."""
    cfg = resolve_config(["config/test.yaml"], {"pretrain": {"epochs": "2", "crops": {"blur_kernel_frac": "1e-1"}}})
    assert cfg["pretrain"]["epochs"] == 2 and cfg["pretrain"]["crops"]["blur_kernel_frac"] == 0.1
    assert typed_values({"a": ["1e-3", "x", 3]}) == {"a": [1e-3, "x", 3]}


def test_exponent_numbers_in_a_config_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: config/test.yaml\nfamilies: {vit: {optimizer: {lr: 5e-4, weight_decay: 4e-2}}}\n")
    assert load_workflow_config([mine])["families"]["vit"]["optimizer"]["lr"] == 5e-4


def test_base_chain_loop_and_missing_base_are_errors(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    write(a, {"base": str(b)})
    write(b, {"base": str(a)})
    with pytest.raises(ConfigError, match="loops"):
        resolve_config([a])
    write(a, {"base": "config/no_such.yaml"})
    with pytest.raises(ConfigError, match="config/no_such.yaml.*relative to the working directory"):
        resolve_config([a])


def test_relative_paths_fall_back_to_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_workflow_config(["config/test.yaml"], root=REPO)["scale"]["name"] == "test"


def test_pretrain_keys_are_named_where_the_workflow_config_sets_them() -> None:
    cfg = load_workflow_config(["config/test.yaml"])
    exp = "mokd_r50_vit_s"
    vit = cfg["models"][cfg["experiments"][exp]["models"][1]]["family"]
    assert pretrain_key_origin(cfg, exp, "crops.n_locla") == "pretrain.crops.n_locla"
    assert pretrain_key_origin(cfg, exp, "models[1].optimizer.lr") == f"families.{vit}.optimizer.lr"
    assert pretrain_key_origin(cfg, exp, "data.max_per_clas") == "datasets.pretrain.spec.max_per_clas"
    assert pretrain_key_origin(cfg, exp, "crops.mean") == "normalization.mean"
    cfg["experiments"]["dino_r34"]["epochs"] = 20
    assert pretrain_key_origin(cfg, "dino_r34", "epochs") == "experiments.dino_r34.epochs"
    assert pretrain_key_origin(cfg, "dino_r34", "batch_size") == "pretrain.batch_size"
    cfg["models"]["r50"]["settings"] = {"teacher_temp": {"start": 0.02}}
    assert pretrain_key_origin(cfg, exp, "models[0].teacher_temp.start") == "models.r50.settings.teacher_temp.start"
    assert pretrain_key_origin(cfg, exp, "models[0].teacher_temp.end") == "families.cnn.teacher_temp.end"


def test_a_models_own_settings_override_its_familys_for_that_model_only() -> None:
    cfg = load_workflow_config(["config/test.yaml"], {"models": {"r18": {"settings": {"teacher_temp": {"start": 0.02}}}}})
    family = cfg["families"]["cnn"]
    assert "settings" not in cfg["models"]["r34"]
    r18, r34 = pretrain_settings(cfg, ["r18", "r34"], [1.0, 1.0])["models"]
    assert r18["teacher_temp"]["start"] == 0.02
    assert r18["teacher_temp"]["end"] == family["teacher_temp"]["end"]  # the rest: the family's
    assert r34["teacher_temp"] == family["teacher_temp"]
    assert r18["optimizer"] == r34["optimizer"] == family["optimizer"]
    bad = load_workflow_config(["config/test.yaml"], {"models": {"r18": {"settings": {"teacher_tmp": 0.02}}}})
    with pytest.raises(ConfigError, match=r"models\.r18\.settings\.teacher_tmp"):
        check_pretrain_configs(Matrix(bad))


BROKEN_YAML = "scale:\n  results: x\n  seeds: [0\n  foo: 1\n"  # an unclosed list: YAML stops at line 4


def test_malformed_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN_YAML)
    with pytest.raises(ConfigError) as err:
        load_yaml(bad)
    assert str(err.value).startswith(f"config file {bad}, line 4, column 6: not valid YAML: expected ',' or ']'")
    assert "<unicode string>" not in str(err.value) and "\n" not in str(err.value)


def test_run_sh_checks_the_config_files_before_snakemake(tmp_path: Path) -> None:
    """Snakemake reads --configfile files itself first and names neither file nor line; scripts/run.sh
    checks them (and their base chains) before it starts Snakemake."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN_YAML)
    user = write(tmp_path / "user.yaml", {"base": str(bad)})
    for given in (bad, user):
        out = subprocess.run(["bash", "scripts/run.sh", "-n", "--configfile", str(given)], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"error: config file {bad}, line 4, column 6: not valid YAML" in out.stderr, out.stderr
        assert "Config file is not valid JSON or YAML" not in out.stderr  # Snakemake did not get to it


def test_the_config_files_of_a_snakemake_command_line() -> None:
    from mokd.commands.check_config import configfiles_of

    args = ["-n", "--configfile", "a.yaml", "b.yaml", "--cores", "2", "--configfile=c.yaml", "--configfiles", "d.yaml"]
    assert configfiles_of(args) == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    assert configfiles_of(["table_s2", "--cores", "all"]) == []

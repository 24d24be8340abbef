"""Config reading: numbers in exponent form, override errors, key paths in validation errors, file paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from mokd.config import ConfigError, apply_overrides, load_yaml, parse_yaml, typed_scalar, validate
from tests.core.tiny import PAIRS, tiny_config

EXPONENTS = {"1e-3": 1e-3, "5e-4": 5e-4, "1e12": 1e12, "1.0e12": 1e12, "1.0e+12": 1e12, "-2E3": -2000.0, ".5e1": 5.0}


@pytest.mark.parametrize(("text", "value"), EXPONENTS.items())
def test_exponent_numbers_are_floats_in_files_and_overrides(text: str, value: float, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"lr: {text}\nnested: {{lr: [{text}]}}\n")
    cfg = load_yaml(path)
    assert cfg == {"lr": value, "nested": {"lr": [value]}} and isinstance(cfg["lr"], float)
    out = apply_overrides({"models": [{"optimizer": {"lr": 0.1}}]}, [f"models.0.optimizer.lr={text}"])
    assert out["models"][0]["optimizer"]["lr"] == value and isinstance(out["models"][0]["optimizer"]["lr"], float)
    assert typed_scalar(text) == value


def test_other_scalars_keep_their_yaml_meaning() -> None:
    assert parse_yaml("[10, 0x1f, 1_000, 1.5, .inf, true, null, 1e, e3, 1.2.3, '1e-3']") == [
        10, 31, 1000, 1.5, float("inf"), True, None, "1e", "e3", "1.2.3", "1e-3",
    ]
    assert isinstance(parse_yaml("10"), int)
    assert [typed_scalar(t) for t in ("foo", "12", "false", "~", "#x")] == ["foo", 12, False, None, "#x"]


def test_exponent_learning_rate_validates_as_a_number(fashion_root: Path) -> None:
    cfg = tiny_config(PAIRS["dino"](), fashion_root)
    out = validate(apply_overrides(cfg, ["models.0.optimizer.lr=1e-3"]), "pretrain")
    assert out["models"][0]["optimizer"]["lr"] == 1e-3


def test_unknown_nested_key_names_its_full_path(fashion_root: Path) -> None:
    cfg = tiny_config(PAIRS["dino"](), fashion_root)
    with pytest.raises(ConfigError) as err:
        validate(apply_overrides(cfg, ["crops.n_locla=3"]), "pretrain")
    assert "config key 'crops.n_locla'" in str(err.value) and "did you mean 'n_local'" in str(err.value)
    assert err.value.key == "crops.n_locla"
    with pytest.raises(ConfigError, match=r"config key 'models\[0\]\.optimizer\.lrr'"):
        validate(apply_overrides(cfg, ["models.0.optimizer.lrr=1"]), "pretrain")
    with pytest.raises(ConfigError, match=r"config key 'epochz'"):
        validate({**cfg, "epochz": 1}, "pretrain")


def test_override_that_does_not_apply_names_it() -> None:
    with pytest.raises(ConfigError, match=r"config key 'models.5.lr'.*does not apply"):
        apply_overrides({"models": [{}]}, ["models.5.lr=1"])


def test_missing_config_file_says_paths_are_relative_to_the_working_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="relative to the working directory") as err:
        load_yaml("no/such/config.yaml")
    assert str(Path.cwd()) in str(err.value)

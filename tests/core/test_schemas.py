"""Every settings object is checked by mokd.config.validate against its schema in mokd/schemas/: an
unknown key or a bad value names its full key path (and the allowed keys, or the value and what was
expected); defaults come from the schema, through `$ref`s to sibling schema files too."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mokd.config import ConfigError, load_schema, validate
from mokd.data.datasets import DATASET_NAMES, parse_dataset_config
from mokd.data.imagefolder import BAD_IMAGE_POLICIES
from mokd.eval import detection
from mokd.models.backbone import BackboneSpec
from mokd.tables.build import validate_spec
from mokd.tables.reported import TableError

SPEC = {"id": "t1", "title": "Table T1: x", "reconstructed": True, "columns": [{"key": "a", "label": "A"}],
        "rows": [{"key": "r", "label": "R", "cells": {"a": {"metrics": "m.json"}}}]}


def test_backbone_bad_key_and_value_name_their_path() -> None:
    with pytest.raises(ConfigError) as err:
        BackboneSpec.from_config({"arch": "resnet18", "drop_pth": 0.1})
    assert err.value.key == "drop_pth"
    assert "did you mean 'drop_path'" in str(err.value) and "'stem_stride'" in str(err.value)
    with pytest.raises(ConfigError, match=r"backbone config key 'stem_stride' must be one of \[null, 1, 2\], got 3"):
        BackboneSpec.from_config({"arch": "resnet18", "stem_stride": 3})


def test_backbone_in_a_pretrain_config_is_checked_and_filled_through_its_ref() -> None:
    cfg = {"data": {"name": "cifar10", "root": "data"}, "models": [{"name": "a", "backbone": {"arch": "resnet18"}}]}
    out = validate(cfg, "pretrain")
    assert out["models"][0]["backbone"] == {"arch": "resnet18", "timm_kwargs": {}, "stem_stride": None, "drop_path": 0.0,
                                              "pos_embed_interpolation": "dino", "squeeze_excite": True}
    bad = copy.deepcopy(cfg)
    bad["models"][0]["backbone"]["drop_path"] = 2
    with pytest.raises(ConfigError, match=r"config key 'models\[0\]\.backbone\.drop_path' must be <= 1, got 2"):
        validate(bad, "pretrain")


def test_dataset_bad_key_and_value_name_their_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_dataset_config({"name": "cifar10", "root": tmp_path, "file_list": {"tran": "a.txt"}})
    assert err.value.key == "file_list.tran" and "allowed keys here: ['train', 'val']" in str(err.value)
    with pytest.raises(ConfigError, match=r"dataset config key 'max_per_class' must be >= 1, got 0"):
        parse_dataset_config({"name": "cifar10", "root": tmp_path, "max_per_class": 0})
    with pytest.raises(ConfigError, match=r"config key 'data\.roots': unknown key"):
        validate({"data": {"name": "cifar10", "roots": "x"}, "models": [{"name": "a", "backbone": {"arch": "resnet18"}}]},
                 "pretrain")


def test_dataset_schema_agrees_with_the_code() -> None:
    props = load_schema("dataset")["properties"]
    assert tuple(props["name"]["enum"]) == DATASET_NAMES
    assert [p for p in props["on_bad_image"]["enum"] if p is not None] == list(BAD_IMAGE_POLICIES)


def test_detection_bad_key_and_value_name_their_path() -> None:
    with pytest.raises(ConfigError) as err:
        detection.check_settings({"data": {"roots": "x"}})
    assert err.value.key == "data.roots" and "allowed keys here: ['name', 'root', 'train', 'val']" in str(err.value)
    with pytest.raises(ConfigError, match=r"detect setting 'freeze_at' must be one of \[0, 1, 2\], got 3"):
        detection.check_settings({"freeze_at": 3})
    with pytest.raises(ConfigError, match=r"detect setting 'min_size' must be an integer or a list, got 'x'"):
        detection.check_settings({"min_size": "x"})
    with pytest.raises(ConfigError, match="lo <= hi"):
        detection.check_settings({"min_size": [800, 600]})


def test_detection_defaults_come_from_the_schema() -> None:
    assert detection.DEFAULTS["steps"] == [120000 / 180000, 160000 / 180000]
    filled = detection.check_settings({"data": {"root": "coco"}, "iterations": 10})
    assert filled == {**detection.DEFAULTS, "data": {**detection.DEFAULTS["data"], "root": "coco"}, "iterations": 10}


def test_table_spec_bad_key_and_value_name_their_path() -> None:
    bad = copy.deepcopy(SPEC)
    bad["rows"][0]["cells"]["a"]["metrix"] = "m.json"
    with pytest.raises(TableError, match=r"spec x\.json key 'rows\[0\]\.cells\.a\.metrix': unknown key\(s\) \['metrix'\]"):
        validate_spec(bad, "x.json")
    bad = copy.deepcopy(SPEC)
    bad["columns"][0]["decimals"] = -1
    with pytest.raises(TableError, match=r"spec \(inline\) key 'columns\[0\]\.decimals' must be >= 0, got -1"):
        validate_spec(bad)


def test_table_spec_defaults() -> None:
    out = validate_spec({**SPEC, "rows": [{"key": "r", "label": "R"}]})
    assert out["rows"][0]["cells"] == {} and out["derived"] == [] and out["decimals"] == 1
    assert (out["caption"], out["notes"], out["footer"], out["row_header"], out["latex_resize"]) == ("", [], {}, "", False)

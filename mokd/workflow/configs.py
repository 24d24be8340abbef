"""The workflow's config: which files make it, in which order, with what on top; and what it lacks.

A workflow config is a stack of layers, later ones merged over earlier ones (nested mappings merge,
lists and scalars replace):

1. every `--configfile` in the order given (Snakemake's own layering), each with its `base:` chain
   merged under it: `base: FILE` means "that file, plus what this one says", whatever else was loaded;
2. the embedded default scale (config/default.yaml) under all of them when none of those files names
   a scale (`scale.name`, usually inherited through `base:`), e.g. when no `--configfile` is given;
3. `--config key=value` overrides on top.

Every file is read with `mokd.config.ConfigLoader` (so `1e-3` is a number, as in every config of the
project), not with Snakemake's own reading; `--config` values, which Snakemake leaves as strings
inside mappings, are typed the same way. Relative paths (`--configfile`, `base:`) are relative to the
working directory, else to `root` when one is given (the repository, for scripts run elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mokd.config import ConfigError, deep_merge, load_yaml, typed_scalar, validate

DEFAULT_CONFIG = "config/default.yaml"
WORKFLOW_SCHEMA = "workflow/schemas/config.schema.yaml"


def _locate(path: str | Path, root: str | Path | None) -> Path:
    """`path` as given when it exists (absolute or relative to the working directory), else under `root`."""
    path = Path(path)
    if path.is_absolute() or path.exists() or root is None:
        return path
    return Path(root) / path


def typed_values(values: Any) -> Any:
    """A copy with every string leaf read as a plain YAML scalar (`--config` values inside mappings)."""
    if isinstance(values, Mapping):
        return {k: typed_values(v) for k, v in values.items()}
    if isinstance(values, list):
        return [typed_values(v) for v in values]
    return typed_scalar(values) if isinstance(values, str) else values


def resolve_layer(cfg: Mapping[str, Any], root: str | Path | None = None, origin: str = "config") -> dict[str, Any]:
    """One layer with its `base:` chain merged under it (each base may name its own base)."""
    out = dict(cfg)
    chain = [origin]
    seen: set[Path] = set()
    while "base" in out:
        base = out.pop("base")
        if not isinstance(base, (str, Path)):
            raise ConfigError(f"config key 'base' in {chain[-1]}: a file path, got {base!r}", key="base")
        path = _locate(base, root)
        if path.resolve() in seen:
            raise ConfigError(f"config key 'base': the chain loops: {' -> '.join([*chain, str(base)])}", key="base")
        seen.add(path.resolve())
        chain.append(str(base))
        out = deep_merge(load_yaml(path), out)
    return out


def resolve_config(
    configfiles: Iterable[str | Path],
    overrides: Mapping[str, Any] | None = None,
    default: str | Path = DEFAULT_CONFIG,
    root: str | Path | None = None,
) -> dict[str, Any]:
    """The merged (not yet validated) config of these config files and overrides (module docstring)."""
    cfg: dict[str, Any] = {}
    for f in configfiles:
        path = _locate(f, root)
        cfg = deep_merge(cfg, resolve_layer(load_yaml(path), root, str(f)))
    if not (isinstance(cfg.get("scale"), dict) and "name" in cfg["scale"]):
        cfg = deep_merge(resolve_layer(load_yaml(_locate(default, root)), root, str(default)), cfg)
    if overrides:
        cfg = deep_merge(cfg, resolve_layer(typed_values(overrides), root, "--config"))
    return cfg


def load_workflow_config(
    configfiles: Iterable[str | Path],
    overrides: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    schema: str | Path = WORKFLOW_SCHEMA,
) -> dict[str, Any]:
    """`resolve_config` validated against the workflow's schema, defaults filled in; ConfigError names the key."""
    return validate(resolve_config(configfiles, overrides, root=root), workflow_schema(schema, root))


def workflow_schema(schema: str | Path = WORKFLOW_SCHEMA, root: str | Path | None = None) -> dict[str, Any]:
    """The workflow's schema with its `tables` entry made from the table registry
    (mokd/workflow/table_specs.py): one key per registered table, no other."""
    from mokd.workflow.table_specs import TABLES

    out = load_yaml(_locate(schema, root))
    tables = out["properties"]["tables"]
    tables["properties"] = {t.id: {"type": "object", "description": t.config} for t in TABLES.values()}
    tables["additionalProperties"] = False
    return out


def pretrain_key_origin(config: Mapping[str, Any], exp: str, key: str) -> str:
    """The workflow config key that a key of experiment `exp`'s pre-training config comes from
    (mokd/workflow/settings.py's `pretrain_config` builds that config from these sections)."""
    e = config["experiments"][exp]
    m = re.match(r"^models\[(\d+)\]\.?(.*)$", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if i >= len(e["models"]):
            return f"experiments.{exp}.models"
        role = e["models"][i]
        first = rest.split(".")[0].split("[")[0]
        if first in ("name", "backbone"):
            return f"models.{role}.{rest}"
        if first == "lambda":
            return f"experiments.{exp}.lambda"
        model = config["models"][role]
        if _sets(model.get("settings") or {}, rest):
            return f"models.{role}.settings.{rest}"
        return f"families.{model['family']}" + (f".{rest}" if rest else "")
    if key in ("<top level>", ""):
        return "pretrain"
    first = key.split(".")[0].split("[")[0]
    if first == "data":
        return f"datasets.{e.get('dataset', 'pretrain')}.spec" + key[len("data"):]
    if key in ("crops.mean", "crops.std"):
        return f"normalization.{key.split('.')[1]}"
    if first in e:
        return f"experiments.{exp}.{key}"
    return f"pretrain.{key}"


def _sets(settings: Mapping[str, Any], dotted: str) -> bool:
    """Whether a nested mapping sets the dotted key (or a section above it): `a.b` in {a: {b: 1}}."""
    node: Any = settings
    for part in re.split(r"[.\[]", dotted):
        if not isinstance(node, Mapping):
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def missing_protocol_files(protocols: Mapping[str, Any]) -> list[str]:
    """One line per list file a protocol's settings name (a semi-supervised subset: SimCLR's split
    files) that is not there."""
    problems = []
    for name, p in protocols.items():
        subset = p.get("settings", {}).get("subset") or {}
        path = subset.get("file_list") if isinstance(subset, Mapping) else None
        if path and not Path(path).is_file():
            problems.append(f"protocol '{name}': subset file list {path} not found (protocols.{name}.settings.subset."
                            "file_list; SimCLR's ImageNet splits are imagenet_subsets/1percent.txt and 10percent.txt "
                            "of github.com/google-research/simclr)")
    return problems


def missing_user_datasets(datasets: Mapping[str, Any]) -> list[str]:
    """One line per missing split of a user-provided dataset (`prepare: none`), naming the path."""
    user = {name: d for name, d in datasets.items() if d["prepare"] == "none"}
    if not user:
        return []
    from mokd.data import check_dataset  # imports torch: only when there is a dataset to check

    problems = []
    for name, d in user.items():
        for split in d.get("check_splits", ["train", "val"]):
            try:
                check_dataset(d["spec"], split)
            except (FileNotFoundError, ValueError) as exc:
                problems.append(f"dataset '{name}' ({split}): {exc}")
    return problems

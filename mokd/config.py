"""Config files: YAML loading, command-line overrides, schema validation with defaults, hashing, diffs."""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the key."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new mapping: `update` merged into `base`, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `dotted.key=value` overrides (value parsed as YAML; list items addressed by index)."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.split(".")
        node: Any = out
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        last = keys[-1]
        value = yaml.safe_load(raw)
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return out


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (#/$defs/...) and merge the referring schema's own keys over it."""
    if "$ref" not in schema:
        return schema
    target: Any = root
    for part in schema["$ref"].lstrip("#/").split("/"):
        target = target[part]
    merged = {**_resolve(target, root), **{k: v for k, v in schema.items() if k != "$ref"}}
    return merged


def _fill_defaults(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> None:
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(instance, dict):
        for option in schema.get("anyOf", []):
            option = _resolve(option, root)
            if option.get("type") == "object":
                _fill_defaults(instance, option, root)
        if schema.get("type") != "object":
            return
        for key, sub in schema.get("properties", {}).items():
            sub = _resolve(sub, root)
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"], root)


def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped with the package (mokd/schemas/<name>.yaml)."""
    text = resources.files("mokd.schemas").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    return "".join(parts).lstrip(".") or "<top level>"


def validate(cfg: dict[str, Any], schema: dict[str, Any] | str) -> dict[str, Any]:
    """A copy of `cfg` with schema defaults filled in; the first violation raises ConfigError naming its key."""
    if isinstance(schema, str):
        schema = load_schema(schema)
    out = copy.deepcopy(cfg)
    _fill_defaults(out, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(out), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            raise ConfigError(f"config key '{_key_path(err)}': {err.message}; allowed keys: {allowed}")
        raise ConfigError(f"config key '{_key_path(err)}': {err.message}")
    return out


def config_hash(cfg: Any) -> str:
    """Short stable hash of a config (sorted-key JSON)."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(sub)
            else:
                out.extend(diff_keys(a[key], b[key], sub))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out.extend(diff_keys(x, y, f"{prefix}[{i}]"))
        return out
    return [] if a == b else [prefix or "<top level>"]

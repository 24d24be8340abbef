"""Config files: YAML loading, command-line overrides, schema validation with defaults, hashing, diffs."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the key (`key`: its dotted path)."""

    def __init__(self, message: str, key: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.detail = detail if detail is not None else message

    @classmethod
    def at(cls, key: str, detail: str) -> "ConfigError":
        """`config key 'KEY': DETAIL`, with both kept (a caller may name the key its own way)."""
        return cls(f"config key '{key}': {detail}", key=key, detail=detail)


# YAML 1.2's float syntax: an exponent needs neither a dot nor a sign (1e-3, 5e-4, 1e12, 1.0e12), which
# PyYAML's YAML 1.1 resolver reads as strings; the YAML 1.1 forms (1.5, .5, 1_000.0, 1:30.0, .inf) stay.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_FLOAT_TAG = "tag:yaml.org,2002:float"


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader whose plain scalars in exponent form are floats (YAML 1.2), as OmegaConf and
    Hydra users expect. Every config file and `key=value` override of the project is read with it."""


ConfigLoader.yaml_implicit_resolvers = {  # the safe loader's resolvers, in their order, float's replaced
    first: [(tag, _FLOAT if tag == _FLOAT_TAG else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str) -> Any:
    """YAML text as the project reads it (ConfigLoader)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def typed_scalar(text: str) -> Any:
    """What `text` means as a plain (unquoted) YAML scalar: an int, float, bool or null, else the text."""
    loader = ConfigLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))
        if tag.rsplit(":", 1)[-1] not in ("int", "float", "bool", "null"):
            return text
        return loader.construct_object(yaml.ScalarNode(tag, text), deep=True)
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file not found: {path} (relative paths are relative to the working directory, {Path.cwd()})"
        )
    try:
        data = parse_yaml(path.read_text())
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
        try:
            for key in keys[:-1]:
                node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
            last = keys[-1]
            value = parse_yaml(raw)
            if isinstance(node, list):
                node[int(last)] = value
            elif isinstance(node, dict):
                node[last] = value
            else:
                raise TypeError(f"{type(node).__name__} value has no keys")
        except (IndexError, ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
            raise ConfigError.at(dotted, f"override {item!r} does not apply ({exc})") from exc
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
    return parse_yaml(text)


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
        where = _key_path(err)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(err.schema.get("properties", {}))
            unknown = sorted(str(k) for k in err.instance if k not in allowed)
            prefix = "" if where == "<top level>" else f"{where}."
            key = f"{prefix}{unknown[0]}" if unknown else where
            close = difflib.get_close_matches(unknown[0], allowed, n=1) if unknown else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError.at(key, f"unknown key{hint}; allowed keys here: {allowed}")
        raise ConfigError.at(where, err.message)
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

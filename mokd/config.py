"""Config files: YAML loading, command-line overrides, schema validation with defaults, hashing, diffs."""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT202012


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


def yaml_error_message(path: str | Path, exc: yaml.YAMLError) -> str:
    """One line naming the file, the line and column, and what PyYAML found there."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return f"config file {path} is not valid YAML: {' '.join(str(exc).split())}"
    where = f"config file {path}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: "
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        where_context = f" ({context} started at line {context_mark.line + 1})"
    else:
        where_context = f" ({context})" if context else ""
    return where + " ".join(f"{exc.problem}{where_context}".split())  # type: ignore[attr-defined]


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
        raise ConfigError(yaml_error_message(path, exc)) from exc
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


def _set_defaults(validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]) -> Any:
    """jsonschema's `properties` keyword, first filling each missing property that has a `default` (a copy),
    so nested objects get theirs as validation descends (jsonschema FAQ: extending a validator)."""
    if validator.is_type(instance, "object"):
        for key, sub in properties.items():
            if isinstance(sub, dict) and "default" in sub and key not in instance:
                instance[key] = copy.deepcopy(sub["default"])
    yield from _PROPERTIES(validator, properties, instance, schema)


_PROPERTIES = jsonschema.Draft202012Validator.VALIDATORS["properties"]
_FillingValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": _set_defaults})


def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped with the package (mokd/schemas/<name>.yaml)."""
    text = resources.files("mokd.schemas").joinpath(f"{name}.yaml").read_text()
    return parse_yaml(text)


@functools.cache
def _package_schemas() -> Registry:
    """Every mokd/schemas/*.yaml under its file name, so a schema refers to another as `$ref: backbone.yaml`."""
    names = sorted(p.name for p in resources.files("mokd.schemas").iterdir() if p.name.endswith(".yaml"))
    # Stored without `$schema`: jsonschema picks the validator class of a referenced schema from its
    # `$schema` (the plain draft's, which fills no defaults); without it the default-filling class stays.
    return Registry().with_resources(
        (name, DRAFT202012.create_resource(
            {k: v for k, v in load_schema(name.removesuffix(".yaml")).items() if k != "$schema"}))
        for name in names
    )


def _key_path(path: Iterable[Any]) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".")


_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
          "object": "a mapping", "array": "a list", "null": "null"}
_BOUNDS = {"minimum": ">= {}", "exclusiveMinimum": "> {}", "maximum": "<= {}", "exclusiveMaximum": "< {}",
           "minItems": "a list of at least {} item(s)", "maxItems": "a list of at most {} item(s)",
           "minLength": "a string of at least {} character(s)", "maxLength": "a string of at most {} character(s)",
           "minProperties": "a mapping of at least {} key(s)", "pattern": "a string matching {!r}"}


def _expected(error: jsonschema.ValidationError) -> str:
    """What the failed keyword asks for, in words."""
    kind, want = error.validator, error.validator_value
    if kind == "type":
        return " or ".join(_TYPES.get(t, t) for t in ([want] if isinstance(want, str) else want))
    if kind == "enum":
        return f"one of {json.dumps(want, default=str)}"
    if kind == "const":
        return json.dumps(want, default=str)
    if kind in _BOUNDS:
        return _BOUNDS[kind].format(want)
    if kind in ("anyOf", "oneOf"):
        options = [_expected(e) for e in error.context if not e.relative_path]
        return " or ".join(dict.fromkeys(options)) or f"valid under {kind}"
    return error.message


def _config_error(error: jsonschema.ValidationError, label: str, description: str | None = None) -> ConfigError:
    """One violation as a ConfigError: the full key path, the allowed (or missing) keys, the value and
    what was expected (with the key's schema description)."""
    path = list(error.absolute_path)
    description = error.schema.get("description", description) if isinstance(error.schema, dict) else description
    if error.validator in ("anyOf", "oneOf"):
        # an alternative of the value's type failed inside (an unknown key, a bound): report that one
        matching = [e for e in error.context if e.validator != "type"]
        if matching:
            return _config_error(jsonschema.exceptions.best_match(matching), label, description)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(str(k) for k in error.instance if k not in allowed)
        key = _key_path([*path, unknown[0]]) if unknown else _key_path(path)
        close = difflib.get_close_matches(unknown[0], allowed, n=1) if unknown else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        detail = f"unknown key(s) {unknown}{hint}; allowed keys here: {allowed}"
    elif error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        key = _key_path([*path, missing[0]]) if missing else _key_path(path)
        detail = f"missing key(s) {missing}; required here: {list(error.validator_value)}"
    else:
        key = _key_path(path) or "<top level>"
        about = f" ({description})" if description else ""
        detail = f"must be {_expected(error)}, got {error.instance!r}{about}"
        return ConfigError(f"{label} '{key}' {detail}", key=key, detail=detail)
    return ConfigError(f"{label} '{key}': {detail}", key=key, detail=detail)


def validate(cfg: dict[str, Any], schema: dict[str, Any] | str, label: str = "config key") -> dict[str, Any]:
    """THE settings check of the project: a copy of `cfg` with the schema's defaults filled in (nested
    ones too), validated against `schema` (a dict, or the name of a mokd/schemas/ file; `$ref`s to
    sibling files resolve through the `referencing` registry). The first violation, in key order, raises
    ConfigError: `LABEL 'full.key.path': ...` naming unknown keys with the allowed ones, missing keys, or
    the value and what was expected."""
    if isinstance(schema, str):
        schema = load_schema(schema)
    out = copy.deepcopy(cfg)
    validator = _FillingValidator(schema, registry=_package_schemas())
    errors = list(validator.iter_errors(out))
    if errors:
        first = min(errors, key=lambda e: [(isinstance(p, str), p) for p in e.absolute_path])
        raise _config_error(first, label)
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

"""Reading ``shipml.toml``: finding the project root, applying ``SHIPML_<SECTION>_<KEY>``
environment overrides, and errors that name the key and the closest valid one."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from shipml.config.project import DatasetSection, ProjectConfig
from shipml.errors import ConfigError

CONFIG_FILE = "shipml.toml"
ENV_PREFIX = "SHIPML_"
# Environment variables that are not settings (read elsewhere).
ENV_NOT_SETTINGS = frozenset(
    {
        "SHIPML_DEBUG",
        "SHIPML_PROJECT",
        "SHIPML_SERVE_SPEC",
        "SHIPML_CHROMIUM",
        "SHIPML_DASHBOARD_TOKEN",
    }
)


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding a shipml.toml; without ``start``,
    ``SHIPML_PROJECT`` or else the current directory is where the search begins."""
    env = os.environ.get("SHIPML_PROJECT")
    if env and start is None:
        root = Path(env).expanduser().resolve()
        if not (root / CONFIG_FILE).is_file():
            raise ConfigError(
                f"SHIPML_PROJECT={env!r} has no {CONFIG_FILE}",
                hint="point SHIPML_PROJECT at a folder made by `shipml init`, or unset it",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or any folder above it",
        hint="run `shipml init NAME` to create a project, or cd into one",
    )


def load_config(
    root: Path | None = None, *, environ: dict[str, str] | None = None
) -> ProjectConfig:
    """Read ``shipml.toml`` under ``root`` (found upwards from cwd if omitted), then apply
    ``SHIPML_<SECTION>_<KEY>`` environment overrides."""
    root = find_root() if root is None else root.resolve()
    file = root / CONFIG_FILE
    data: dict[str, Any] = {}
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{file} is not valid TOML: {exc}", hint="fix the line named above"
            ) from exc
    origins = _apply_env(data, os.environ if environ is None else environ)
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, file, origins) from exc
    config.root = root
    return config


def _apply_env(data: dict[str, Any], environ: Any) -> dict[tuple[str, str], str]:
    """Apply SHIPML_* overrides to ``data``; returns which keys came from which variable."""
    origins: dict[tuple[str, str], str] = {}
    sections = {
        name: field.annotation
        for name, field in ProjectConfig.model_fields.items()
        if name not in {"root", "datasets"}
    }
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_SETTINGS:
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        for section, model in sections.items():
            if not rest.startswith(section + "_"):
                continue
            key = rest[len(section) + 1 :]
            fields = model.model_fields  # type: ignore[union-attr]
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1)
                valid = f"{ENV_PREFIX}{section.upper()}_{close[0].upper()}" if close else None
                raise ConfigError(
                    f"unknown setting in environment variable {var}",
                    hint=f"did you mean {valid}?" if valid else _valid_env(section, fields),
                )
            wants_text = fields[key].annotation is str
            data.setdefault(section, {})[key] = raw if wants_text else _parse_env_value(raw)
            origins[(section, key)] = var
            break
        else:
            names = [f"{ENV_PREFIX}{s.upper()}_..." for s in sections]
            raise ConfigError(
                f"unknown setting in environment variable {var}",
                hint="settings are named " + ", ".join(names),
            )
    return origins


def _valid_env(section: str, fields: dict[str, Any]) -> str:
    return "valid: " + ", ".join(f"{ENV_PREFIX}{section.upper()}_{k.upper()}" for k in fields)


def _parse_env_value(raw: str) -> Any:
    """JSON where it parses (numbers, booleans, lists, objects), the plain string otherwise."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _config_error(
    exc: ValidationError, file: Path, origins: dict[tuple[str, str], str]
) -> ConfigError:
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(loc)
    if err["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(valid)}"
        return ConfigError(f"unknown key '{dotted}' in {file}", hint=hint)
    if err["type"] == "missing":
        return ConfigError(
            f"missing key '{dotted}' in {file}",
            hint=f"add {loc[-1]} = ... under [{'.'.join(loc[:-1])}]",
        )
    value = err.get("input")
    where = origins.get((loc[0], loc[1])) if len(loc) >= 2 else None
    place = f"environment variable {where}" if where else str(file)
    return ConfigError(
        f"invalid value for '{dotted}' in {place}: {err['msg']} (got {value!r})",
        hint="see docs/config.md for every setting and its type",
    )


def _valid_keys(parent: list[str]) -> list[str]:
    """The keys allowed at a location such as ``[]``, ``["tracking"]``, ``["tests", "data"]``
    or ``["datasets", "x"]``."""
    if not parent:
        return [k for k in ProjectConfig.model_fields if k != "root"]
    if parent[0] == "datasets" and len(parent) == 2:
        return list(DatasetSection.model_fields)
    model: Any = ProjectConfig
    keyed = False  # the next part is a key of a table of tables ([tune.space.NAME])
    for part in parent:
        if keyed or isinstance(part, int) or part.isdigit():  # an item of a list of tables
            keyed = False
            continue
        field = model.model_fields.get(part)
        model = field.annotation if field is not None else None
        if get_origin(model) is list:
            model = get_args(model)[0]
        elif get_origin(model) is dict:
            model, keyed = get_args(model)[1], True
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                return []
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)

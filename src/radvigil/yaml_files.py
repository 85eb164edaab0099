"""Reading a YAML file into a pydantic model with one clear error (every config file uses it)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from radvigil.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path, model: type[M], what: str) -> M:
    """``path`` parsed and validated as ``model``; a missing file, bad YAML or invalid field is
    one ConfigError naming the file and the field (``what`` names the kind of file)."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return model.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or what
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc

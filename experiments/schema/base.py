"""How the schema's types become JSON and come back.

Out: dataclasses walked into plain values (derived `computed` fields included) and written by orjson.
In: plain JSON values converted into the dataclasses by msgspec, which checks every type and names the
path of a bad value. Why these two: dataclasses are what orjson writes natively (code holding a record can
dump it as is), and msgspec decodes into them ~10x faster than pydantic; both are small C extensions with
no dependencies.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import orjson

T = TypeVar("T")

_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_CONTAINERS = (list, tuple, dict)


class SchemaError(ValueError):
    """A document that does not fit the schema; the message names the file and the bad field."""


class computed(property):
    """A derived field: written to JSON for readers without our code, never read back (recomputed)."""


@cache
def computed_names(cls: type) -> tuple[str, ...]:
    """Names of a class's `computed` fields, base classes first, in definition order."""
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            if isinstance(attr, computed):
                names[name] = None
    return tuple(names)


def _float(value: float) -> float | str | None:
    """JSON has no infinity: "inf" / "-inf" (msgspec reads them back), NaN as null."""
    if math.isfinite(value):
        return value
    return None if math.isnan(value) else ("inf" if value > 0 else "-inf")


@cache
def json_names(cls: type) -> tuple[str, ...]:
    """What a dataclass writes: its fields (those not marked `json=False` in their metadata), then its
    `computed` fields."""
    stored = tuple(f.name for f in fields(cls) if f.metadata.get("json", True))
    return stored + computed_names(cls)


_SCALARS = (str, int, bool, type(None))
# Field metadata of what only some runs have (a cluster run's nodes): written only when set, so that the
# results of every other run keep their shape. Read back as the default when absent.
OMIT_EMPTY = {"omit_empty": True}


@cache
def _omit_empty_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls) if f.metadata.get("omit_empty"))


def to_builtins(obj: Any) -> Any:
    """Plain JSON values of a schema object: `json_names` of dataclasses; Paths as strings; infinite
    floats as "inf"."""
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    if isinstance(obj, float):
        return _float(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        sparse = _omit_empty_names(kind)
        for name in json_names(kind):
            value = getattr(obj, name)
            if name in sparse and (value is None or value == []):
                continue
            out[name] = value if type(value) in _SCALARS else to_builtins(value)
        return out
    if isinstance(obj, dict):
        return {k: to_builtins(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        # Long measurement lists (chunk times, power) hold plain numbers: pass them through whole.
        if not obj or not (isinstance(obj[0], _CONTAINERS) or is_dataclass(obj[0])):
            return list(obj)
        return [to_builtins(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj  # numpy scalars and arrays: orjson writes them


def dumps(obj: Any) -> bytes:
    """Compact JSON of a schema object (records hold long timestamp lists that indentation would bloat)."""
    return orjson.dumps(to_builtins(obj), option=_DUMP_OPTS)


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"no conversion to {kind}")


def convert(data: Any, cls: type[T], where: str) -> T:
    """`data` (parsed JSON) as a `cls`; unknown keys (e.g. computed fields) are ignored.

    Raises SchemaError naming `where` and the path of the first bad value.
    """
    try:
        return msgspec.convert(data, cls, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise SchemaError(f"{where} does not fit the result schema: {exc}") from exc

"""The base of every config model: frozen, unknown keys refused, and strict where pydantic's lax
mode would silently convert a value (a boolean for a number, a float for an integer, NUL in text)."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationInfo, field_validator

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
"""Text that is not empty (NUL is refused for every string)."""


class StrictModel(BaseModel):
    """Frozen, no unknown keys, and none of pydantic's silent conversions (see `_plain_values`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse what pydantic's lax mode would silently convert: a boolean where a number is
        expected (true -> 1), a number where a boolean is (2 -> true); and NUL in any text."""
        field = cls.model_fields.get(info.field_name or "")
        annotation = field.annotation if field is not None else None
        _refuse_nul(value, typing.get_origin(annotation) is dict)
        kinds = _scalar_kinds(annotation)
        if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
            raise ValueError("expected a number, got a boolean")
        if isinstance(value, int | float) and not isinstance(value, bool) and kinds == {bool}:
            raise ValueError("expected true or false, got a number")
        parses_itself = field is not None and any(callable(getattr(m, "func", None)) for m in field.metadata)
        if _integer_only(annotation) and not parses_itself and not _is_integer(value):
            raise ValueError("expected an integer (a number without a fractional part or an exponent)")
        return value


def _integer_only(annotation: Any) -> bool:
    """An `int` field (or an optional one): pydantic would take 8080.0 or "8080.0" for it. (A
    size such as `64MiB` is an int with a validator of its own: its parser decides.)"""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = typing.get_args(annotation)
        return float not in kinds and any(_integer_only(kind) for kind in kinds)
    return annotation is int


def _is_integer(value: Any) -> bool:
    """Not a float, nor text that is not an integer (a ${VAR} gives text)."""
    if isinstance(value, str):
        try:
            int(value.strip(), 10)
        except ValueError:
            return False
    return not isinstance(value, float)


def _refuse_nul(value: Any, is_mapping_field: bool) -> None:
    """NUL in a string, a list of strings, or a plain mapping (Kafka `client`); a section is a model
    and checks its own fields (so the error names the innermost key)."""
    if isinstance(value, dict) and is_mapping_field:
        items: list[Any] = [*value.keys(), *value.values()]
    else:
        items = list(value) if isinstance(value, list | tuple) else [value]
    if any(isinstance(item, str) and "\x00" in item for item in items):
        raise ValueError("contains a NUL character")


def _scalar_kinds(annotation: Any) -> set[type]:
    """The scalar types a field accepts (bool, int, float, str), through Optional and Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _scalar_kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return {k for arg in typing.get_args(annotation) for k in _scalar_kinds(arg)}
    return {annotation} if annotation in (bool, int, float, str) else set()

"""The batch inference job specification: :func:`validate_batch` turns a JSON body into a
:class:`BatchSpec`.

Like :mod:`matih_ml.job_spec` (whose style it follows), it is the batch job API's body and
the batch runner's spec at once, so it sits in the core: the contracts, the client and the
runner all import it from here. A bad body raises a ValidationError naming the field as a
dotted path (``input.path``): a 422 up front, never a Ray job failing later.

:func:`check_under_root` is the submit-time half of the path rules (which tenant's root a
path lies under, decided from its text alone); the runner checks again on the filesystem,
where a symlink could lead out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from matih_ml import validation
from matih_ml.errors import MatihError, ValidationError

# strict: in a JSON body "5" is not 5 and true is not 1.
_Strict = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_NAME_SCHEMA = {"pattern": validation.MODEL_NAME_PATTERN, "maxLength": validation.MODEL_NAME_MAX}
# The columns the runner adds beside the key columns: a key column may not take their name.
PREDICTION = "prediction"
MODEL_VERSION = "model_version"
_OUTPUT_NAME = re.compile(rf"^({PREDICTION}(_\d+)?|{MODEL_VERSION})$")
DEFAULT_BATCH_SIZE = 4096
MAX_BATCH_SIZE = 100_000
MAX_CONCURRENCY = 256

Problem = tuple[str, str]


def _bad(reason: str) -> PydanticCustomError:
    # The reason goes in the context, not the template: it may quote input holding braces.
    return PydanticCustomError("batch_spec", "{reason}", {"reason": reason})


def _text(value: str) -> str:
    if not value.strip() or _CONTROL_RE.search(value):
        raise _bad("must not be blank or contain control characters")
    return value


def _name(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise _bad("must not contain control characters")
    return value


def _path(value: str) -> str:
    # Local paths are resolved under the tenant's own data root: an absolute path or a
    # '..' segment would reach another tenant's files.
    is_s3 = value.startswith("s3://")
    if _CONTROL_RE.search(value):
        raise _bad("must not contain control characters")
    if "://" in value and not is_s3:
        raise _bad("only s3:// URIs are accepted")
    if ".." in re.split(r"[/\\]", value):
        raise _bad("must not contain '..' path segments")
    if not is_s3 and value.startswith(("/", "\\")):
        raise _bad("must be a path relative to the tenant's data root or an s3:// URI")
    if is_s3 and not value.removeprefix("s3://").split("/")[0]:
        raise _bad("s3:// URI must name a bucket")
    if not value.strip("/. "):
        raise _bad("must name a file or a folder, not the data root itself")
    return value


def _rule(value: str, check: Any) -> str:
    try:
        return str(check(value))
    except MatihError as exc:
        raise _bad(exc.message) from None


def _model(value: str) -> str:
    return _rule(value, validation.model_name)


def _alias(value: str) -> str:
    return _rule(value, lambda v: validation.key(v, "alias"))


def _version(value: str) -> str:
    return _rule(value, validation.version)


Column = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_text)]
Columns = Annotated[list[Column], Field(max_length=1000)]
DataPath = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_path)]


class _Spec(BaseModel):
    model_config = _Strict

    def _problems(self) -> Iterator[Problem]:
        """Yield the problems single-field checks cannot see (runs once every field passed)."""
        return iter(())

    @model_validator(mode="after")
    def _cross_checked(self) -> Self:
        problems = list(self._problems())
        if problems:
            details = [
                InitErrorDetails(type=_bad(m), loc=tuple(filter(None, p.split("."))), input=None)
                for p, m in problems
            ]
            raise PydanticValidationError.from_exception_data(type(self).__name__, details)
        return self


class BatchInput(_Spec):
    """The table to score: a file, a folder of files or an ``s3://`` prefix.

    ``format`` follows from the file's extension when not given (for a folder, from the
    extension its files share).
    """

    path: DataPath
    format: Literal["parquet", "csv"] | None = None

    @property
    def resolved_format(self) -> str | None:
        """``format``, else the path's extension's (None: a folder to look into)."""
        if self.format is not None:
            return self.format
        lower = self.path.lower().rstrip("/")
        for fmt in ("parquet", "csv"):
            if lower.endswith(f".{fmt}"):
                return fmt
        return None


class BatchOutput(_Spec):
    """Where the scores go: a ``.parquet`` file, or a folder (given ``part-00000.parquet``)."""

    path: DataPath

    def _problems(self) -> Iterator[Problem]:
        name = self.path.rstrip("/").rsplit("/", 1)[-1].lower()
        if "." in name and not name.endswith(".parquet"):
            yield "path", "the output is parquet: name a .parquet file or a folder"


class BatchSpec(_Spec):
    """A batch inference job: score ``input`` with a version of ``model``, into ``output``.

    Exactly one of ``stage``, ``alias`` and ``version`` names the version (none given:
    ``stage="production"``); the runner resolves it once, when the job starts.
    """

    name: Annotated[str, Field(max_length=128), AfterValidator(_name)] = ""
    model: Annotated[str, AfterValidator(_model), Field(json_schema_extra=_NAME_SCHEMA)]
    stage: Literal["staging", "production"] | None = None
    alias: Annotated[str, AfterValidator(_alias)] | None = None
    version: Annotated[str, AfterValidator(_version)] | None = None
    input: BatchInput
    columns: Columns = []
    key_columns: Annotated[list[Column], Field(max_length=100)] = []
    output: BatchOutput
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE)
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] | None = None

    @model_validator(mode="after")
    def _default_stage(self) -> Self:
        if self.stage is None and self.alias is None and self.version is None:
            self.stage = "production"
        return self

    @property
    def target(self) -> tuple[str, str]:
        """The version's name as ``(kind, value)``: ``("stage", "production")``..."""
        for kind in ("version", "alias", "stage"):
            value = getattr(self, kind)
            if value is not None:
                return kind, value
        return "stage", "production"  # pragma: no cover - _default_stage sets one

    def _problems(self) -> Iterator[Problem]:
        given = [f for f in ("stage", "alias", "version") if getattr(self, f) is not None]
        if len(given) > 1:
            yield given[1], f"give only one of stage, alias and version (not {given[0]} too)"
        for field, names in (("columns", self.columns), ("key_columns", self.key_columns)):
            if len(set(names)) != len(names):
                yield field, "must not repeat a column"
        for name in self.key_columns:
            if _OUTPUT_NAME.match(name):
                yield "key_columns", f"{name!r} is the name of a column the job writes"
        inp, out = _parts(self.input.path), _parts(self.output.path)
        if out[: len(inp)] == inp:
            yield "output.path", "must not be the input or lie inside it"
        elif inp[: len(out)] == out:
            yield "output.path", "must not be a folder holding the input"


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "[key]")


def validate_batch(body: Any) -> BatchSpec:
    """Parse and check a JSON-decoded batch inference job body.

    Args:
        body: The decoded JSON request body.

    Returns:
        The job specification (``stage`` is ``production`` when no version was named).

    Raises:
        ValidationError: Naming the first problem; ``details["field"]`` is its dotted path
            and ``details["problems"]`` lists every problem as ``{"field", "message"}``.
    """
    try:
        return BatchSpec.model_validate(body)
    except PydanticValidationError as exc:
        problems = [
            {"field": _dotted(e["loc"]), "message": e["msg"]} for e in exc.errors(include_url=False)
        ]
    first = problems[0]
    prefix = f"{first['field']}: " if first["field"] else ""
    raise ValidationError(
        f"{prefix}{first['message']}", details={"field": first["field"], "problems": problems}
    )


def batch_schema() -> dict[str, Any]:
    """Return the JSON schema of a batch job body (for the OpenAPI document)."""
    return BatchSpec.model_json_schema()


def s3_key(uri: str) -> str:
    """``s3://bucket/a//./b/`` as ``bucket/a/b``: what is checked is what is read."""
    bucket, *key = uri.removeprefix("s3://").split("/")
    return "/".join([bucket, *(p for p in key if p not in ("", "."))])


def check_under_root(spec: BatchSpec, data_root: str) -> None:
    """Refuse a path that is not under the tenant's data root, from its text alone.

    A relative path is under the root by construction (the spec refuses ``..`` and
    absolute paths); an ``s3://`` URI must lie under an ``s3://`` root's prefix.

    Raises:
        ValidationError: Naming ``input.path`` or ``output.path``.
    """
    for field, path in (("input.path", spec.input.path), ("output.path", spec.output.path)):
        if not path.startswith("s3://"):
            continue
        if not data_root.startswith("s3://"):
            raise ValidationError(
                f"{field}: the tenant's data root is not on s3://; give a path relative to it.",
                details={"field": field},
            )
        root = s3_key(data_root)
        # The trailing slash: s3://b/acme-evil/x is not under s3://b/acme.
        if not s3_key(path).startswith(f"{root}/"):
            raise ValidationError(
                f"{field}: must be under the tenant's data root s3://{root}/",
                details={"field": field},
            )

"""A training job's table: read it under the tenant's data root, and split it.

The root is a local folder or an ``s3://bucket/prefix``. Files of ``ray_data_min_bytes`` and
more are read by Ray Data tasks, smaller ones by pyarrow here: both read with the same Arrow
options and check each batch with :func:`_prepare`, so they give the same frame and errors.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pcsv
from pyarrow import fs as pafs
from pyarrow import parquet as pq

from matih_ml.errors import ValidationError

if TYPE_CHECKING:  # Ray workers import this module: keep it light (no pydantic, sklearn)
    from matih_ml.job_spec import JobSpec

log = logging.getLogger(__name__)
Prepare = Callable[[pd.DataFrame], pd.DataFrame]

RAY_DATA_MIN_BYTES = 256 * 2**20
_PATH = {"field": "data.path"}
_CSV_READ = pcsv.ReadOptions(use_threads=False)  # Ray Data's default, on both paths
_AWS_ERROR = re.compile(r"AWS Error (\w+)")
# Short reasons: the SDK's own text names the endpoint, which is the operator's business.
_AWS_REASONS = {
    "ACCESS_DENIED": "access denied",
    "NETWORK_CONNECTION": "the object store cannot be reached",
    "NO_SUCH_BUCKET": "the bucket does not exist",
}


def table_filesystem(data_root: str | Path) -> tuple[pafs.FileSystem, str]:
    """Return the filesystem a data root lies on, and the root's path in it.

    A folder (or ``file://``) gives a ``LocalFileSystem`` and the resolved folder; ``s3://``
    an ``S3FileSystem`` and ``bucket/prefix``. S3 is configured from the environment like the
    rest of the service, read at each call: the endpoint from ``MLFLOW_S3_ENDPOINT_URL``,
    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (plain HTTP for ``http://``), the keys
    from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` (else the AWS
    SDK's default chain), the region from ``AWS_DEFAULT_REGION`` (``us-east-1``) and at most
    ``AWS_MAX_ATTEMPTS`` (3) attempts a request. The filesystem pickles with its settings
    (keys included), so Ray tasks can be handed it.
    """
    text = str(data_root)
    uri = urlsplit(text) if "://" in text else None
    if uri is None or uri.scheme == "file":  # file://: an MLflow artifact root may be one
        return pafs.LocalFileSystem(), str(Path(unquote(uri.path) if uri else text).resolve())
    if uri.scheme != "s3":
        raise ValueError(f"data root {text!r}: only folders and s3:// are supported")
    root = _s3_path(text)
    if not root:
        raise ValueError(f"data root {data_root!r} names no bucket")
    env = os.environ.get
    options: dict[str, Any] = {"region": env("AWS_DEFAULT_REGION") or "us-east-1"}
    endpoint = (
        env("MLFLOW_S3_ENDPOINT_URL") or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL")
    )
    if endpoint:
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=url.netloc, scheme=url.scheme)
    if env("AWS_ACCESS_KEY_ID") and env("AWS_SECRET_ACCESS_KEY"):
        keys = ("access_key", "secret_key", "session_token")
        names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        options.update({k: env(n) for k, n in zip(keys, names, strict=True)})
    # As boto3 elsewhere in the service (backend.py): fail soon while the store is down.
    retry = pafs.AwsStandardS3RetryStrategy(max_attempts=int(env("AWS_MAX_ATTEMPTS") or 3))
    return pafs.S3FileSystem(retry_strategy=retry, **options), root


def read_table(
    spec: JobSpec, data_root: str | Path, *, ray_data_min_bytes: int = RAY_DATA_MIN_BYTES
) -> tuple[pd.DataFrame, pd.Series]:
    """Read a table job's features (as float64) and target.

    Args:
        spec: The job; ``data.path`` is relative to ``data_root``, or an ``s3://`` URI under it.
        data_root: The tenant's data root: a local folder or ``s3://bucket/prefix``.
        ray_data_min_bytes: Files this large or larger are read through Ray Data (on the
            caller's Ray, or a local one when none is initialised; here without Ray).

    Raises:
        ValidationError: For a path outside the root, a missing or unreadable file, a
            missing or non-numeric column, missing values, or fewer than 10 rows.
    """
    data = spec.data
    if data.kind != "table":
        raise ValidationError("data.kind: not supported yet", details={"field": "data.kind"})
    if not data.path.lower().endswith((".csv", ".parquet")):  # the spec checks local paths
        raise ValidationError("data.path: must name a .csv or .parquet file", details=_PATH)
    fs, path, size = _locate(data.path, data_root)
    csv = data.path.lower().endswith(".csv")
    read = _read_with_ray if size >= ray_data_min_bytes and _ray_ready() else _read_here
    try:
        names = _column_names(fs, path, csv)
        features = data.features or [c for c in names if c != data.target]
        missing = [c for c in [data.target, *features] if c not in names]
        if missing or not features:
            what = f"column {missing[0]!r} is not in the table" if missing else "no features"
            raise ValidationError(f"data: {what}", details={"field": "data.features"})
        prepare = functools.partial(_prepare, features=features, target=data.target, text=csv)
        frame = read(fs, path, csv, [*features, data.target], prepare)
    except (OSError, ValueError, pa.ArrowException) as exc:  # Arrow's, or a Ray task's
        raise _read_error(data.path, path, exc) from None
    if len(frame) < 10:
        raise ValidationError("data: the table has fewer than 10 rows", details={"field": "data"})
    frame = frame.reset_index(drop=True)
    return frame[features], frame[data.target]


def _s3_path(uri: str) -> str:
    # 'bucket/key' without empty or '.' segments: what is checked is what is read.
    bucket, *key = uri.removeprefix("s3://").split("/")
    return "/".join([bucket, *(p for p in key if p not in ("", "."))])


def _locate(path: str, data_root: str | Path) -> tuple[pafs.FileSystem, str, int]:
    """The file's filesystem, its path there and its size, once it is known to be allowed."""
    fs, root = table_filesystem(data_root)
    if isinstance(fs, pafs.LocalFileSystem):
        if path.startswith("s3://"):
            message = "data.path: must be under the tenant's data root, which is not s3://"
            raise ValidationError(f"{message} (give a path relative to it)", details=_PATH)
        full = (Path(root) / path).resolve()
        # The spec refuses '..' and absolute paths; a symlink could still lead out.
        if not full.is_relative_to(root):
            raise ValidationError("data.path: leaves the data root", details=_PATH)
        if not full.is_file():
            raise ValidationError(f"data.path: {path!r} not found", details=_PATH)
        return fs, str(full), full.stat().st_size
    target = _s3_path(path if path.startswith("s3://") else f"s3://{root}/{path}")
    # The trailing slash: s3://b/acme-evil/x is not under s3://b/acme.
    if not target.startswith(f"{root}/") or ".." in target.split("/"):
        message = f"data.path: must be under the tenant's data root s3://{root}/"
        raise ValidationError(message, details=_PATH)
    try:
        info = fs.get_file_info(target)
    except OSError as exc:
        raise _read_error(path, target, exc) from None
    if info.type != pafs.FileType.File:
        raise ValidationError(f"data.path: {path!r} not found", details=_PATH)
    return fs, target, info.size or 0


def _read_error(path: str, fs_path: str, exc: BaseException) -> ValidationError:
    """A 422 naming ``data.path`` for a file that cannot be read; the details go to the log."""
    cause = getattr(exc, "cause", None) or exc  # a Ray task's error carries the original
    log.warning("training table %s cannot be read: %s", path, cause)
    if isinstance(cause, FileNotFoundError):
        return ValidationError(f"data.path: {path!r} not found", details=_PATH)
    code = _AWS_ERROR.search(str(cause))
    if code:
        reason = _AWS_REASONS.get(code[1], f"the object store answered {code[1]}")
    else:  # e.g. Arrow's parse error: its first sentence, naming data.path, not our path
        text = str(cause).replace(fs_path, path) or type(cause).__name__
        reason = re.split(r"\.\s", text, maxsplit=1)[0]
    return ValidationError(f"data.path: cannot read {path!r}: {reason}", details=_PATH)


def _column_names(fs: pafs.FileSystem, path: str, csv: bool) -> list[str]:
    """The table's columns, from its header or footer (before reading any rows)."""
    if csv:
        with fs.open_input_stream(path) as stream:
            return pcsv.open_csv(stream, read_options=_CSV_READ).schema.names
    schema = pq.read_schema(path, filesystem=fs)
    # pandas stores a non-range index as a column; pd.read_parquet made it the index again.
    index = (schema.pandas_metadata or {}).get("index_columns", [])
    return [n for n in schema.names if n not in index]


def _csv_convert(columns: list[str]) -> pcsv.ConvertOptions:
    # Features stay text until _prepare parses them: Arrow types a column from the first
    # block, so a later non-number would fail the read itself (its message lost through
    # Ray). The target (the last column) keeps Arrow's type: labels may be text.
    text = dict.fromkeys(columns[:-1], pa.string())
    return pcsv.ConvertOptions(column_types=text, include_columns=columns, strings_can_be_null=True)


def _read_here(
    fs: pafs.FileSystem, path: str, csv: bool, columns: list[str], prepare: Prepare
) -> pd.DataFrame:
    if not csv:
        return prepare(pq.read_table(path, filesystem=fs, columns=columns).to_pandas())
    with fs.open_input_stream(path) as stream:
        # open_csv, not read_csv: streamed as Ray Data does, the target is typed alike.
        reader = pcsv.open_csv(
            stream, read_options=_CSV_READ, convert_options=_csv_convert(columns)
        )
        return prepare(reader.read_all().to_pandas())


def _ray_ready() -> bool:
    """Start a local Ray unless the caller has one; False without Ray (an optional extra)."""
    try:
        import ray
    except ImportError:
        return False
    if not ray.is_initialized():
        from matih_ml.training.ray_session import ensure_ray

        ensure_ray(None)
    return True


def _read_with_ray(
    fs: pafs.FileSystem, path: str, csv: bool, columns: list[str], prepare: Prepare
) -> pd.DataFrame:
    import ray

    if csv:
        convert = _csv_convert(columns)
        ds = ray.data.read_csv(path, filesystem=fs, read_options=_CSV_READ, convert_options=convert)
    else:
        # Ray 2.60 starts 32 footer-reading actors a read_parquet; one file needs one.
        os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
        ds = ray.data.read_parquet(path, filesystem=fs, file_extensions=None)
    # The dataset's own copy of the context, which derived datasets copy on.
    ds.context.execution_options.preserve_order = True  # the rows in the file's order
    # _TableProblem as it is: wrapped in a UserCodeException, it would lose its message.
    ds.context.raise_original_map_exception = True
    # numpy-typed batches, as on the direct path (Ray 2.56+ makes them Arrow-backed).
    ds.context.enable_arrow_backed_pandas_conversion = False
    if not csv:
        ds = ds.select_columns(columns)
    udf = functools.partial(_prepare_in_ray, prepare=prepare)
    try:
        frame = ds.map_batches(udf, batch_format="pandas", batch_size=None).to_pandas()
    except ValidationError as exc:  # a RayTaskError(_TableProblem)
        problem = getattr(exc, "cause", exc)
        raise ValidationError(problem.message, details=problem.details) from None
    # to_pandas follows the driver's global context (Arrow-backed columns): back to numpy.
    return pa.Table.from_pandas(frame, preserve_index=False).to_pandas(ignore_metadata=True)


def _prepare(batch: pd.DataFrame, *, features: list[str], target: str, text: bool) -> pd.DataFrame:
    """Check a batch (the whole table when read here); cast its features to float64.

    ``text``: the features are a CSV's text, to parse; a parquet's types are its own.
    """
    if batch.empty:  # Ray may hand over an empty block: only the row count can be wrong
        return batch[[*features, target]].astype(dict.fromkeys(features, np.float64))
    columns: dict[str, Any] = {}
    for c in features:
        values = _parse_numbers(batch[c]) if text else batch[c]
        if values is None or not pd.api.types.is_numeric_dtype(values):
            message = f"data.features: column {c!r} is not numeric"
            raise ValidationError(message, details={"field": "data.features"})
        columns[c] = values
    frame = pd.DataFrame(columns, index=batch.index).astype(np.float64)
    if frame.isna().any().any() or batch[target].isna().any():
        raise ValidationError("data: the table has missing values", details=_PATH)
    frame[target] = batch[target]
    return frame


def _parse_numbers(values: pd.Series) -> pd.Series | None:
    """Text as float64, parsed as Arrow parses CSV numbers (exactly, unlike pd.to_numeric)."""
    try:
        parsed = pc.cast(pa.array(values, type=pa.string(), from_pandas=True), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index)


def _prepare_in_ray(batch: pd.DataFrame, *, prepare: Prepare) -> pd.DataFrame:
    try:
        return prepare(batch)
    except ValidationError as exc:
        raise _table_problem_type()(exc.message, details=exc.details) from None


@functools.cache
def _table_problem_type() -> type[ValidationError]:
    # A ValidationError Ray Data logs as the user code's own. Built on first use (Ray is
    # optional); the module's __getattr__ names it, so it pickles by reference.
    from ray.exceptions import UserCodeException

    problem = type("_TableProblem", (ValidationError, UserCodeException), {})
    problem.__module__ = __name__
    return problem


def __getattr__(name: str) -> Any:
    if name == "_TableProblem":
        return _table_problem_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def split(
    x: pd.DataFrame, y: pd.Series | np.ndarray, fraction: float, seed: int, classifier: bool
) -> list[Any]:
    from sklearn.model_selection import train_test_split  # not at import: see TYPE_CHECKING

    try:
        return train_test_split(
            x, y, test_size=fraction, random_state=seed, stratify=y if classifier else None
        )
    except ValueError as exc:  # e.g. a class with one row cannot be stratified
        raise ValidationError(
            f"data: cannot split the table: {exc}", details={"field": "data"}
        ) from None

"""A batch job's input and output, found under the tenant's data root.

The root is a local folder or an ``s3://bucket/prefix``, on the filesystem training's
tables are read from (:func:`~matih_ml.training.data.table_filesystem`). The spec has
refused ``..`` and absolute paths, and the submit refused ``s3://`` paths outside the
prefix; here the paths are checked again where they lie (a symlink could lead out of a
local root) and the input's files, format, columns and size are read from its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
from pyarrow import csv as pcsv
from pyarrow import fs as pafs

from matih_ml.batch_spec import BatchSpec, s3_key
from matih_ml.errors import ValidationError
from matih_ml.training.data import table_filesystem

_INPUT = {"field": "input.path"}
_OUTPUT = {"field": "output.path"}
OUTPUT_PART = "part-00000.parquet"
CSV_READ = pcsv.ReadOptions(use_threads=False)  # as training reads CSV through Ray Data


@dataclass(frozen=True)
class Input:
    """The files to score, in order, with what their metadata says."""

    fs: pafs.FileSystem
    files: list[str]
    format: str
    columns: list[str]
    rows_total: int | None


@dataclass(frozen=True)
class Output:
    """Where the scores go: ``final`` once complete, ``temporary`` until then."""

    fs: pafs.FileSystem
    final: str
    temporary: str
    local: bool


def _full(path: str, fs: pafs.FileSystem, root: str, field: dict[str, str]) -> str:
    """The path on the filesystem, once it is known to be under the root."""
    if isinstance(fs, pafs.LocalFileSystem):
        if path.startswith("s3://"):
            raise ValidationError(
                f"{field['field']}: the tenant's data root is not on s3://; give a path "
                "relative to it.",
                details=field,
            )
        full = (Path(root) / path).resolve()
        # The spec refuses '..' and absolute paths; a symlink could still lead out.
        if not full.is_relative_to(root):
            raise ValidationError(f"{field['field']}: leaves the data root", details=field)
        return str(full)
    target = s3_key(path if path.startswith("s3://") else f"s3://{root}/{path}")
    if not target.startswith(f"{root}/"):
        raise ValidationError(
            f"{field['field']}: must be under the tenant's data root s3://{root}/",
            details=field,
        )
    return target


def find_input(spec: BatchSpec, data_root: str) -> Input:
    """The input's files (a file, or every file of the format under a folder or prefix),
    its format, columns and rows (None for CSV: counting them means reading them).

    Raises:
        ValidationError: Naming ``input.path`` (outside the root, missing, empty, unreadable)
            or ``input.format`` (a folder of mixed or unknown files).
    """
    fs, root = table_filesystem(data_root)
    full = _full(spec.input.path, fs, root, _INPUT)
    try:
        info = fs.get_file_info(full)
        if info.type == pafs.FileType.File:
            files = [full]
        elif info.type == pafs.FileType.Directory:
            found = fs.get_file_info(pafs.FileSelector(full, recursive=True))
            # Hidden files are another writer's temporaries (ours among them).
            files = sorted(
                f.path
                for f in found
                if f.type == pafs.FileType.File and not f.base_name.startswith((".", "_"))
            )
        else:
            raise ValidationError(f"input.path: {spec.input.path!r} not found", details=_INPUT)
    except OSError as exc:
        raise ValidationError(
            f"input.path: cannot read {spec.input.path!r}: {str(exc).split('. ')[0]}",
            details=_INPUT,
        ) from None
    fmt = spec.input.resolved_format or _folder_format(files)
    if len(files) > 1:
        files = [f for f in files if f.lower().endswith(f".{fmt}")]
    if not files:
        raise ValidationError(
            f"input.path: {spec.input.path!r} holds no {fmt} files", details=_INPUT
        )
    try:
        if fmt == "parquet":
            dataset = pads.dataset(files, filesystem=fs, format="parquet")
            index = (dataset.schema.pandas_metadata or {}).get("index_columns", [])
            columns = [n for n in dataset.schema.names if n not in index]
            rows_total: int | None = dataset.count_rows()
        else:
            with fs.open_input_stream(files[0]) as stream:
                columns = pcsv.open_csv(stream, read_options=CSV_READ).schema.names
            rows_total = None
    except (OSError, pa.ArrowException) as exc:
        reason = str(exc).replace(root, "").split(". ")[0]
        raise ValidationError(
            f"input.path: cannot read {spec.input.path!r} as {fmt}: {reason}", details=_INPUT
        ) from None
    return Input(fs, files, fmt, columns, rows_total)


def _folder_format(files: list[str]) -> str:
    kinds = {f.rsplit(".", 1)[-1].lower() for f in files} & {"parquet", "csv"}
    if len(kinds) != 1:
        what = "both parquet and csv" if kinds else "no .parquet or .csv files"
        raise ValidationError(
            f"input.format: the input folder holds {what}; give format parquet or csv",
            details={"field": "input.format"},
        )
    return kinds.pop()


def plan_output(spec: BatchSpec, data_root: str, job_id: str) -> Output:
    """The output's final path and a temporary one beside it (same folder or prefix).

    A ``.parquet`` path is the file itself (replaced if it exists); any other path is a
    folder, which must not hold files yet, given one ``part-00000.parquet``.

    Raises:
        ValidationError: Naming ``output.path`` (outside the root, or a folder in use).
    """
    fs, root = table_filesystem(data_root)
    full = _full(spec.output.path, fs, root, _OUTPUT)
    local = isinstance(fs, pafs.LocalFileSystem)
    if not full.lower().endswith(".parquet"):
        try:
            inside = fs.get_file_info(pafs.FileSelector(full, allow_not_found=True))
        except OSError:  # a file at a folder's path
            inside = [fs.get_file_info(full)]
        if any(f.type == pafs.FileType.File for f in inside):
            raise ValidationError(
                f"output.path: {spec.output.path!r} already holds files: name an empty or "
                "new folder, or a .parquet file",
                details=_OUTPUT,
            )
        full = f"{full}/{OUTPUT_PART}"
    folder = full.rsplit("/", 1)[0]
    if local:
        Path(folder).mkdir(parents=True, exist_ok=True)
        # Checked again now that it exists: a symlinked folder could lead out.
        if not Path(folder).resolve().is_relative_to(root):
            raise ValidationError("output.path: leaves the data root", details=_OUTPUT)
    return Output(fs, full, _temporary(full, job_id, local), local)


def _temporary(full: str, job_id: str, local: bool) -> str:
    folder, name = full.rsplit("/", 1)
    return f"{folder}/.matih-{job_id}-{name}" if local else f"{folder}/.matih-tmp-{job_id}/{name}"


def orphaned_output(spec: BatchSpec, data_root: str, job_id: str) -> Output | None:
    """Where a job that died mid-way (its executor gone) left its temporary output.

    :func:`plan_output` without its checks on the folder (the job's own temporary file
    is in it now). None when the path no longer resolves inside the root.
    """
    fs, root = table_filesystem(data_root)
    try:
        full = _full(spec.output.path, fs, root, _OUTPUT)
    except ValidationError:
        return None
    if not full.lower().endswith(".parquet"):
        full = f"{full}/{OUTPUT_PART}"
    local = isinstance(fs, pafs.LocalFileSystem)
    if local and not Path(full).parent.resolve().is_relative_to(root):
        return None
    return Output(fs, full, _temporary(full, job_id, local), local)

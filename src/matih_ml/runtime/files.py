"""A model's files are data: every path they name stays inside the model's folder.

``mlflow.pyfunc.load_model`` joins the paths an ``MLmodel`` names (a flavour's ``data``,
``model_path``, ``code``, a python model's ``artifacts``...) to the model folder and
follows ``..``, absolute paths and symlinks. An ``MLmodel`` that a tenant wrote can
therefore point at another tenant's files. These checks run at registration, by every
path, and again whenever the service loads a version.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from matih_ml.errors import ValidationError

MLMODEL = "MLmodel"
# The MLmodel's size is bounded: it is parsed before anything else is known about it.
_MLMODEL_MAX_BYTES = 1 << 20

# Keys of a flavour's configuration whose values are paths inside the model folder.
_PATH_KEYS = frozenset(
    {"data", "model_path", "pickled_model", "model_data", "python_model", "code", "model_code"}
)


class UntrustedModelError(ValidationError):
    """A model's files fail the trust checks: a path leaves its folder, a symlink points
    out, or its format is refused. ``details['field']`` names the offending entry."""

    code = "UNTRUSTED_MODEL"


def read_mlmodel(folder: Path) -> dict[str, Any]:
    """Parse ``folder/MLmodel`` as plain YAML data (no object construction).

    Raises:
        UntrustedModelError: If it is missing, too large, or not a mapping.
    """
    path = folder / MLMODEL
    if path.is_symlink() or not path.is_file():
        raise UntrustedModelError("The model has no MLmodel file.", details={"field": "MLmodel"})
    if path.stat().st_size > _MLMODEL_MAX_BYTES:
        raise UntrustedModelError(
            f"The MLmodel file is over {_MLMODEL_MAX_BYTES} bytes.", details={"field": "MLmodel"}
        )
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UntrustedModelError(
            f"The MLmodel file is not valid YAML: {type(exc).__name__}.",
            details={"field": "MLmodel"},
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("flavors"), dict):
        raise UntrustedModelError(
            "The MLmodel file has no 'flavors' mapping.", details={"field": "MLmodel.flavors"}
        )
    for name, conf in meta["flavors"].items():
        if not isinstance(conf, dict):
            raise UntrustedModelError(
                f"The MLmodel flavour {name!r} is not a mapping.",
                details={"field": f"MLmodel.flavors.{name}"},
            )
    return meta


def named_paths(meta: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every ``(field, value)`` of an MLmodel whose value is a path in the model folder."""
    for flavor, conf in meta["flavors"].items():
        base = f"MLmodel.flavors.{flavor}"
        for key in _PATH_KEYS:
            if conf.get(key) is not None:
                yield f"{base}.{key}", conf[key]
        env = conf.get("env")
        if isinstance(env, dict):
            for key, value in env.items():
                yield f"{base}.env.{key}", value
        elif env is not None:
            yield f"{base}.env", env
        artifacts = conf.get("artifacts")
        if isinstance(artifacts, dict):
            for name, spec in artifacts.items():
                value = spec.get("path") if isinstance(spec, dict) else spec
                yield f"{base}.artifacts.{name}.path", value
        elif artifacts is not None:
            yield f"{base}.artifacts", artifacts
    example = meta.get("saved_input_example_info")
    if isinstance(example, dict):
        for key in ("artifact_path", "serving_input_path"):
            if example.get(key) is not None:
                yield f"MLmodel.saved_input_example_info.{key}", example[key]


def inside(root: Path, relative: Any, field: str) -> Path:
    """``root / relative``, resolved, if it stays inside ``root`` (symlinks followed).

    Raises:
        UntrustedModelError: If ``relative`` is not a relative path string, or leaves
            ``root`` by ``..``, an absolute path or a symlink.
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise UntrustedModelError(
            f"{field} must be a relative path inside the model's folder.",
            details={"field": field},
        )
    if os.path.isabs(relative) or relative.startswith(("\\", "~")) or relative[1:2] == ":":
        raise UntrustedModelError(
            f"{field} is an absolute path ({relative!r}); paths must stay inside the "
            "model's folder.",
            details={"field": field},
        )
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise UntrustedModelError(
            f"{field} ({relative!r}) leads outside the model's folder.",
            details={"field": field},
        )
    return target


def check_folder(folder: Path) -> dict[str, Any]:
    """Check a downloaded model folder; return its parsed MLmodel.

    Every path the MLmodel names resolves inside ``folder``, no symlink in it points
    outside, and an ONNX file's external data stays inside.

    Raises:
        UntrustedModelError: Naming the first offending field or file.
    """
    base = folder.resolve()
    for current, dirs, files in os.walk(base):
        for name in [*dirs, *files]:
            entry = Path(current) / name
            if entry.is_symlink():
                rel = entry.relative_to(base).as_posix()
                target = entry.resolve()
                if not target.is_relative_to(base):
                    raise UntrustedModelError(
                        f"The model's file {rel!r} is a symlink that points outside its folder.",
                        details={"field": f"files.{rel}"},
                    )
    meta = read_mlmodel(base)
    for field, value in named_paths(meta):
        inside(base, value, field)
    for onnx_file in base.rglob("*.onnx"):
        _check_onnx_external_data(base, onnx_file)
    return meta


def _check_onnx_external_data(base: Path, onnx_file: Path) -> None:
    """ONNX tensors may live in external files named in the model: keep those inside."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    rel = onnx_file.relative_to(base).as_posix()
    try:
        model = onnx.load(str(onnx_file), load_external_data=False)
    except Exception:  # noqa: BLE001 - an unreadable file is refused when it is loaded
        return
    for tensor in _get_all_tensors(model):
        for entry in tensor.external_data:
            if entry.key == "location":
                inside(onnx_file.parent, entry.value, f"files.{rel}.external_data")


def source_inside(source: str, root: str, field: str = "source") -> None:
    """Check that an artifact URI lies under the tenant's artifact ``root``.

    Both are compared after normalising ``..``; local paths (plain or ``file:``) are
    compared resolved, symlinks followed.

    Raises:
        UntrustedModelError: If ``source`` is elsewhere (another tenant's prefix, say).
    """
    src, top = urlparse(source), urlparse(root)
    if src.scheme in ("", "file") and top.scheme in ("", "file"):
        src_path = Path(unquote(src.path) if src.scheme else source).resolve()
        top_path = Path(unquote(top.path) if top.scheme else root).resolve()
        ok = src_path.is_relative_to(top_path)
    else:
        src_key = posixpath.normpath("/" + src.path)
        top_key = posixpath.normpath("/" + top.path)
        ok = (
            src.scheme == top.scheme
            and src.netloc == top.netloc
            and (src_key == top_key or src_key.startswith(top_key.rstrip("/") + "/"))
        )
    if not ok:
        raise UntrustedModelError(
            "The model's files are not under this tenant's artifact root.",
            details={"field": field},
        )

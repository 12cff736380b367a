"""``matih-ml models``: a tenant's models, on a server (default) or, with ``--local``, on
the server's own stores; either way through the same contracts (``target.doors()``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from matih_ml.cli.dvc_inputs import lock_in_pipeline, locked_outputs
from matih_ml.cli.output import JsonOpt, emit, handles_errors, plain, stderr
from matih_ml.cli.target import Target, targeted
from matih_ml.errors import ValidationError

models_app = typer.Typer(help="Registered models.", no_args_is_help=True)

_MODEL_COLS = ("name", "current_version", "stage", "framework", "versions", "metrics")
_VERSION_COLS = ("model_id", "version", "stage", "run_id", "created")
# Where a new version may land (as MATIH_REGISTER_STAGE), in order.
_LANDINGS = ("development", "staging", "production")


@models_app.command("list")
@handles_errors
@targeted
def models_list(
    stage: Annotated[str | None, typer.Option(help="Only models with a version here.")] = None,
    framework: Annotated[str | None, typer.Option(help="sklearn, pytorch or onnx.")] = None,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """List a tenant's models."""
    with target.doors() as ml:
        rows = list(ml.models.all(stage=stage, framework=framework))  # type: ignore[arg-type]
    emit(rows, _MODEL_COLS, as_json, "Models")


@models_app.command("show")
@handles_errors
@targeted
def models_show(model_id: str, as_json: JsonOpt = False, *, target: Target) -> None:
    """Show one model and its versions."""
    with target.doors() as ml:
        md = ml.models.get(model_id)
        versions = ml.models.list_versions(model_id).items
    if as_json:
        typer.echo(json.dumps({**plain(md), "version_details": plain(versions)}, indent=2))
        return
    emit(md, _MODEL_COLS, False, f"Model {model_id}")
    emit(versions, ("version", "stage", "framework", "run_id", "aliases"), False, "Versions")


def _run_id_file(path: Path) -> dict[str, Any]:
    """The run (and optionally the model's name and path) a training stage wrote.

    Either a JSON object with ``run_id`` (and ``model_name``, ``artifact_path``), or a
    JSON string, or the bare run id on one line.
    """
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ValidationError(f"--run-id-file {str(path)!r}: {exc.strerror}.") from None
    try:
        found: Any = json.loads(text)
    except ValueError:
        found = text
    if isinstance(found, str):
        found = {"run_id": found}
    if not isinstance(found, dict) or not isinstance(found.get("run_id"), str):
        raise ValidationError(
            f"--run-id-file {str(path)!r} holds no run_id: write "
            '{"run_id": "...", "model_name": "..."} or the bare run id.'
        )
    return found


@models_app.command("register")
@handles_errors
@targeted
def models_register(
    name: Annotated[
        str | None, typer.Option(help="The model's name (else model_name in --run-id-file).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="The run that logged the model.")
    ] = None,
    run_id_file: Annotated[
        Path | None,
        typer.Option(
            "--run-id-file",
            help='A JSON file a training stage wrote: {"run_id": ..., "model_name": ...}.',
        ),
    ] = None,
    artifact_path: Annotated[
        str | None, typer.Option(help="The model's path in the run (default: model).")
    ] = None,
    stage: Annotated[
        str | None,
        typer.Option(help="Move a new (or still development) version here, through the gates."),
    ] = None,
    dvc_lock: Annotated[
        Path | None,
        typer.Option(
            "--dvc-lock",
            help="Record the outputs this dvc.lock holds as the run's data inputs first "
            "(inside `dvc repro`, the pipeline's own lock is read without this option).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Register a run's model. Safe to re-run: the same run answers the same version,
    says it existed, and exits 0. In a DVC pipeline, the data hashes of its dvc.lock are
    recorded on the run first (the lineage query finds the run and version by them)."""
    spec: dict[str, Any] = _run_id_file(run_id_file) if run_id_file else {}
    run = run_id or spec.get("run_id")
    model = name or spec.get("model_name")
    path = artifact_path or spec.get("artifact_path") or "model"
    if not run or not model:
        raise ValidationError("Give --run-id and --name, or a --run-id-file that names them.")
    if run_id and spec.get("run_id") and run_id != spec["run_id"]:
        raise ValidationError("--run-id and --run-id-file name different runs; give one.")
    if stage is not None and stage not in _LANDINGS:
        raise ValidationError(f"--stage must be one of {', '.join(_LANDINGS)}; got {stage!r}.")
    lock = dvc_lock or lock_in_pipeline()
    datasets = locked_outputs(lock, leave_out=run_id_file) if lock is not None else []
    if lock is not None and datasets:
        with target.doors() as ml:
            ml.runs.log_inputs(run, datasets)
        if not as_json:
            stderr.print(f"Recorded {len(datasets)} data input(s) from {lock.name}.")
    result = _register(target, model, run, path, stage)
    if not as_json:
        verb = "Registered" if result["created"] else "Already registered"
        stderr.print(f"{verb}: {model} version {result['version']} ({result['stage']}).")
    emit(result, _VERSION_COLS, as_json, "Registered")


def _register(target: Target, model: str, run: str, path: str, stage: str | None) -> dict[str, Any]:
    """Register the run's model, then bring a new (or still development) version to
    ``stage``; the same run again answers its version where it is."""
    with target.doors() as ml, stderr.status(f"Registering {model} from run {run}..."):
        md = ml.models.register(model, run, artifact_path=path)
        version = str(md.registered_version)
        current = ml.models.get_version(model, version)
        if stage and current.stage == "development":
            # As the server's own landing does: one step at a time, each through its gate.
            for step in _LANDINGS[1 : _LANDINGS.index(stage) + 1]:
                ml.lifecycle.transition(model, version, step)  # type: ignore[arg-type]
            current = ml.models.get_version(model, version)
    return {
        "model_id": model,
        "version": version,
        "stage": current.stage,
        "run_id": run,
        "created": bool(md.created),
    }


@models_app.command("promote")
@handles_errors
@targeted
def models_promote(
    model_id: str,
    version: str,
    stage: Annotated[str, typer.Option(help="The target stage.")],
    reason: Annotated[str, typer.Option(help="Why (required with --force).")] = "",
    force: Annotated[bool, typer.Option(help="Skip the gates (admins only).")] = False,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Move a version to another stage, through the gates."""
    with target.doors() as ml:
        md = ml.lifecycle.transition(
            model_id,
            version,
            stage,  # type: ignore[arg-type]
            reason=reason,
            force=force,
        )
    emit(md, _MODEL_COLS, as_json, f"Model {model_id}")


@models_app.command("rollback")
@handles_errors
@targeted
def models_rollback(
    model_id: str,
    reason: Annotated[str, typer.Option(help="Why, for the history.")] = "",
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Put the previous production version back in production."""
    with target.doors() as ml:
        md = ml.lifecycle.rollback(model_id, reason=reason)
    emit(md, _MODEL_COLS, as_json, f"Model {model_id}")


@models_app.command("history")
@handles_errors
@targeted
def models_history(model_id: str, as_json: JsonOpt = False, *, target: Target) -> None:
    """A model's stage moves, oldest first."""
    with target.doors() as ml:
        moves = ml.lifecycle.history(model_id).items
    emit(
        moves,
        ("version", "from_stage", "to_stage", "actor", "reason", "at"),
        as_json,
        f"History of {model_id}",
    )


@models_app.command("verify")
@handles_errors
@targeted
def models_verify(model_id: str, version: str, as_json: JsonOpt = False, *, target: Target) -> None:
    """Check a version's stored files against its signature (exit 1 when not promotable)."""
    with target.doors() as ml:
        found = ml.models.verify(model_id, version)
    emit(
        found,
        ("model", "version", "status", "reason", "key_id", "files", "promotable"),
        as_json,
        "Verification",
    )
    if not found.promotable:
        raise typer.Exit(1)


@models_app.command("download")
@handles_errors
@targeted
def models_download(
    model_id: str,
    dest: Annotated[Path, typer.Argument(help="The folder to write the version's files to.")],
    stage: Annotated[str | None, typer.Option(help="The version in this stage.")] = None,
    version: Annotated[str | None, typer.Option(help="This version.")] = None,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Fetch a version's files (its MLmodel, weights, requirements.txt, model card)."""
    if (stage is None) == (version is None):
        raise ValidationError("Give one of --stage and --version.")
    with target.doors() as ml:
        if version is None:
            found = [v.version for v in ml.models.list_versions(model_id).items if v.stage == stage]
            if not found:
                raise ValidationError(f"Model {model_id!r} has no version in {stage}.")
            version = max(found, key=int)
        with stderr.status(f"Downloading {model_id} version {version}..."):
            ml.models.download(model_id, version, dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    result = {"model_id": model_id, "version": version, "folder": str(dest), "files": files}
    emit(result, ("model_id", "version", "folder", "files"), as_json, "Downloaded")


@models_app.command("bom")
@handles_errors
@targeted
def models_bom(
    model_id: str,
    version: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it to this file.")
    ] = None,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Print a version's ML bill of materials (CycloneDX 1.6 JSON, with or without
    --json; --json makes an error JSON too)."""
    with target.doors() as ml:
        doc = ml.models.bom(model_id, version)
    text = json.dumps(doc, indent=2)
    if output is None:
        typer.echo(text)
        return
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"--output {str(output)!r}: {exc.strerror}.") from None
    if as_json:
        typer.echo(json.dumps({"model_id": model_id, "version": version, "file": str(output)}))
    else:
        stderr.print(f"Wrote the BOM of {model_id} v{version} to {output}")

"""Run a batch inference job: resolve the version once, score the input on Ray Data, and
write the scores atomically.

:func:`run_batch_job` is the executor's runner for ``kind="batch"`` (handed to it by the
composition root). The version is resolved when the job starts and recorded (log,
progress, result, events) before any row is scored, so a promotion during the job changes
nothing in it. Ray Data reads the input in blocks and scores them on a pool of actors,
each loading the model once (:class:`~matih_ml.batch.scorer.Scorer`); this driver only
counts rows, writes them to parquet as they stream in, records progress, and stops
between batches when the job is cancelled.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from matih_ml.batch.output import AtomicParquet, delete_temporary
from matih_ml.batch.paths import CSV_READ, Input, find_input, orphaned_output, plan_output
from matih_ml.batch.scorer import SAMPLE, ModelInput, Scorer, pack
from matih_ml.batch_spec import MODEL_VERSION, PREDICTION, BatchSpec
from matih_ml.errors import MatihError, ValidationError
from matih_ml.events.catalog import EventType
from matih_ml.serving.resolver import Target, no_version
from matih_ml.training.context import JobCancelled, JobContext
from matih_ml.training.executor import Finished
from matih_ml.training.ray_session import ensure_ray

if TYPE_CHECKING:
    from matih_ml.config import Settings
    from matih_ml.events.outbox import EventLog
    from matih_ml.registry.provenance import Provenance
    from matih_ml.registry.service import RegistryService
    from matih_ml.runtime.loader import ModelRuntime
    from matih_ml.serving.service import PredictionService
    from matih_ml.store.db import Database
    from matih_ml.training.jobs import Job, JobService

log = logging.getLogger(__name__)

SAMPLE_ROWS = 1000  # input rows fed to the version's drift monitoring
PROGRESS_EVERY_S = 1.0


class BatchServices(Protocol):
    """What a batch job uses of the services (the composition root's ``Services``)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def registry(self) -> RegistryService: ...

    @property
    def runtime(self) -> ModelRuntime: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def jobs(self) -> JobService: ...

    @property
    def serving(self) -> PredictionService: ...

    @property
    def provenance(self) -> Provenance: ...


@dataclass
class _Sample:
    """Up to SAMPLE_ROWS input rows and their predictions, a reservoir over the stream."""

    rows: list[dict[str, Any]]
    predictions: list[Any]
    seen: int = 0

    def offer(self, table: pa.Table, outputs: list[str]) -> None:
        picked = table.column(SAMPLE).to_pylist()
        values = [table.column(c).to_pylist() for c in outputs]
        rng = random.Random(self.seen)
        for i, text in enumerate(picked):
            if text is None:
                continue
            prediction = values[0][i] if len(values) == 1 else [v[i] for v in values]
            self.seen += 1
            if len(self.rows) < SAMPLE_ROWS:
                self.rows.append(json.loads(text))
                self.predictions.append(prediction)
            else:
                slot = rng.randrange(self.seen)
                if slot < SAMPLE_ROWS:
                    self.rows[slot], self.predictions[slot] = json.loads(text), prediction


def discard_orphaned_output(services: BatchServices, job: Job) -> None:
    """Delete the temporary output of a job whose executor died (failed as stale).

    Its final path was never touched; this removes the hidden file (or S3 prefix) it
    was writing, so that a dead executor leaves no garbage in the tenant's folder.
    """
    try:
        spec = services.jobs.validate_batch(job.tenant_id, job.spec)
        output = orphaned_output(
            spec, services.settings.tenant_data_root(job.tenant_id), job.job_id
        )
    except MatihError as exc:  # the spec no longer passes today's rules: nothing to find
        log.info("batch job %s: no temporary output to look for: %s", job.job_id, exc.message)
        return
    if output is not None:
        delete_temporary(output)


def run_batch_job(services: BatchServices, job: Job, context: JobContext) -> Finished:
    """Score the job's input with the version its target names now; write the output.

    Raises:
        JobCancelled: The job was cancelled (its temporary output deleted).
        MatihError: A failure to report as it is (no version in the stage, a missing
            column, a path outside the root...).
    """
    started = time.monotonic()
    settings = services.settings
    # Validated again: what was stored is checked against today's rules and root.
    spec = services.jobs.validate_batch(job.tenant_id, job.spec)
    tenant, model = job.tenant_id, spec.model
    kind, value = spec.target
    target = Target.parse(**{kind: value})
    resolved = services.serving.resolver.resolved(tenant, model, target)
    if resolved is None:
        raise no_version(model, target)
    version = resolved.version
    context.log(f"resolved {model} {target.label} to v{version}: every row is scored with it")
    root = settings.tenant_data_root(tenant)
    source = find_input(spec, root)
    output = plan_output(spec, root, job.job_id)
    services.jobs.set_progress(job.job_id, 0, source.rows_total, version=version)
    with tempfile.TemporaryDirectory(prefix="matih-batch-") as tmp:
        folder = services.registry.download_version(tenant, model, version, Path(tmp) / "m")
        # Checked against its signature before anything reads it, as serving does.
        services.provenance.require_loadable(tenant, model, version, folder, where="batch")
        # The tenant's policy and the operator decide whether a code-bearing model runs
        # at all; the actors then load it as serving would (see batch.scorer).
        classification = services.runtime.inspect(tenant, model, folder)
        model_input = _model_input(spec, source, folder)
        files = pack(folder)
    where = "in process" if classification.in_process else "in the sandbox"
    rows_text = "an unknown number of" if source.rows_total is None else f"{source.rows_total}"
    context.log(
        f"scoring {rows_text} rows of {len(source.files)} {source.format} file(s) with "
        f"v{version} ({where}), columns {model_input.columns}"
    )
    _emit(
        services,
        tenant,
        EventType.BATCH_INFERENCE_STARTED,
        model,
        {
            "job_id": job.job_id,
            "model": model,
            "version": version,
            "input": spec.input.path,
            "rows_total": source.rows_total,
        },
    )
    context.check()
    ensure_ray(settings.ray_address)
    sample = _Sample([], [])
    with AtomicParquet(output) as writer:
        outputs = _score(
            services, job, context, spec, source, model_input, files, version, writer, sample
        )
        empty = pa.schema(
            [
                *(pa.field(k, pa.null()) for k in spec.key_columns),
                (PREDICTION, pa.null()),
                (MODEL_VERSION, pa.string()),
            ]
        )
        context.check()  # the last moment a cancel still leaves nothing behind
        writer.commit(empty)
    seconds = round(time.monotonic() - started, 3)
    rows = writer.rows
    services.jobs.set_progress(job.job_id, rows, rows, version=version)
    context.log(f"wrote {rows} rows to {spec.output.path} in {seconds:g} s")
    _monitor(services, context, tenant, model, version, sample)
    _emit(
        services,
        tenant,
        EventType.BATCH_INFERENCE_COMPLETED,
        model,
        {
            "job_id": job.job_id,
            "model": model,
            "version": version,
            "rows": rows,
            "output": spec.output.path,
            "seconds": seconds,
        },
    )
    result = {
        "version": version,
        "rows": rows,
        "output": spec.output.path,
        "columns": [*spec.key_columns, *outputs, MODEL_VERSION],
        "input_columns": model_input.columns,
        "seconds": seconds,
    }
    reason = f"scored {rows} rows with {model} v{version} into {spec.output.path}"
    return Finished("succeeded", "succeeded", reason, result)


def _model_input(spec: BatchSpec, source: Input, folder: Path) -> ModelInput:
    """The columns the model gets, checked against the input and the model's signature.

    Raises:
        ValidationError: Naming ``key_columns`` or ``columns``.
    """
    import numpy as np
    from mlflow.models import Model

    for c in spec.key_columns:
        if c not in source.columns:
            raise ValidationError(
                f"key_columns: column {c!r} is not in the input", details={"field": "key_columns"}
            )
    schema = Model.load(str(folder)).get_input_schema()
    tensor: str | None = None
    named: list[tuple[str, bool]] = []
    if schema is not None and schema.is_tensor_spec():
        dtype = np.dtype(schema.inputs[0].type)
        tensor = str(dtype if dtype.kind in "fiu" else np.dtype(np.float32))
    elif schema is not None:
        named = [(s.name, bool(s.required)) for s in schema.inputs if s.name is not None]
    names = [n for n, _ in named]
    if spec.columns:
        unknown = [c for c in spec.columns if names and c not in names]
        lacking = [n for n, required in named if required and n not in spec.columns]
        if unknown or lacking:
            what = (
                f"{unknown[0]!r} is not an input of the model"
                if unknown
                else f"the model needs {lacking[0]!r}"
            )
            raise ValidationError(f"columns: {what}", details={"field": "columns"})
        # In the signature's order: the estimator was fitted on them in that order.
        columns = [n for n in names if n in spec.columns] if names else list(spec.columns)
    else:
        keys = set(spec.key_columns)
        columns = names or [c for c in source.columns if c not in keys]
    missing = [c for c in columns if c not in source.columns]
    if missing or not columns:
        what = f"column {missing[0]!r} is not in the input" if missing else "no input columns"
        raise ValidationError(f"columns: {what}", details={"field": "columns"})
    return ModelInput(columns, tensor)


def _score(
    services: BatchServices,
    job: Job,
    context: JobContext,
    spec: BatchSpec,
    source: Input,
    model_input: ModelInput,
    files: bytes,
    version: str,
    writer: AtomicParquet,
    sample: _Sample,
) -> list[str]:
    """Stream the scored batches into ``writer``; return the prediction columns' names."""
    import ray

    from matih_ml.serving.service import PredictionFailedError

    needed = list(dict.fromkeys([*spec.key_columns, *model_input.columns]))
    if source.format == "parquet":
        ds = ray.data.read_parquet(
            source.files, filesystem=source.fs, columns=needed, file_extensions=None
        )
    else:
        ds = ray.data.read_csv(
            source.files, filesystem=source.fs, read_options=CSV_READ, file_extensions=None
        )
    # The dataset's own copy of the context, which derived datasets copy on: the rows in
    # the input's order, the model's own exception, numpy-typed pandas batches.
    ds.context.execution_options.preserve_order = True
    ds.context.raise_original_map_exception = True
    ds.context.enable_arrow_backed_pandas_conversion = False
    cpus = float(ray.cluster_resources().get("CPU", 1))
    actors = spec.concurrency or max(1, int(cpus))
    # Blocks small enough that every actor gets several (a one-row-group file is one
    # 128 MiB block by default, which one actor would score alone).
    size = 8 * len(needed) * source.rows_total if source.rows_total else 64 * 2**20
    ds.context.target_max_block_size = int(min(128 * 2**20, max(2**20, size / (4 * actors))))
    # The actors leave one CPU to the read tasks: actors holding every CPU would wait
    # forever for blocks that no read task can be scheduled to produce.
    share = (cpus - 1) / actors
    rate = 1.0 if not source.rows_total else min(1.0, 2 * SAMPLE_ROWS / source.rows_total)
    runtime = services.runtime
    mapped = ds.map_batches(
        Scorer,
        fn_constructor_kwargs={
            "files": [ray.put(files)],
            "model_input": model_input,
            "key_columns": spec.key_columns,
            "version": version,
            "sandbox": runtime.limits if runtime.enabled else None,
            "sample_rate": rate if source.rows_total else 0.02,
        },
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=min(1.0, share) if share >= 0.1 else 0,
        batch_size=spec.batch_size,
        batch_format="pandas",
    )
    context.log(f"{actors} scoring actor(s) on {cpus:g} CPUs, {spec.batch_size} rows a batch")
    outputs: list[str] = []
    last = time.monotonic()
    stream = iter(mapped.iter_batches(batch_format="pyarrow", batch_size=None))
    try:
        for batch in stream:
            context.check()
            table: pa.Table = batch  # batch_format="pyarrow"
            outputs = [c for c in table.column_names if c.startswith(PREDICTION)]
            if SAMPLE in table.column_names:
                sample.offer(table, outputs)
                table = table.drop_columns([SAMPLE])
            writer.write(table)
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                services.jobs.set_progress(
                    job.job_id, writer.rows, source.rows_total, version=version
                )
                last = time.monotonic()
    except (JobCancelled, MatihError):
        raise
    except Exception as exc:  # noqa: BLE001 - the model raised in an actor, or a read failed
        cause = getattr(exc, "cause", None) or exc
        # Ray Data's advice on retries follows the model's own message: not the tenant's.
        text = str(cause).split("\n\nFailed to apply UDF")[0]
        what = f"{spec.model} v{version} could not score the input"
        raise PredictionFailedError(
            f"{what}: {type(cause).__name__}: {text}"[:500],
            details={"model_id": spec.model, "version": version},
        ) from None
    finally:
        close = getattr(stream, "close", None)
        if close is not None:  # stops the Ray Data execution (and its actors) now
            close()
    return outputs or [PREDICTION]


def _emit(
    services: BatchServices, tenant: str, kind: EventType, model: str, data: dict[str, Any]
) -> None:
    with services.db.uow(tenant=tenant) as s:
        services.events.emit(s, tenant, kind, model, data)


def _monitor(
    services: BatchServices,
    context: JobContext,
    tenant: str,
    model: str,
    version: str,
    sample: _Sample,
) -> None:
    """Feed the input sample to the version's drift monitoring and check it now (a job
    may run in a process whose monitor thread is not running)."""
    if not sample.rows:
        return
    try:
        serving = services.serving
        serving.live.add_rows((tenant, model, version), sample.rows, sample.predictions)
        figures = serving.monitoring(tenant, model, version)
    except Exception as exc:  # monitoring must not fail a job that wrote its output
        log.warning("batch job: drift monitoring of %s v%s failed", model, version, exc_info=True)
        context.log(f"drift monitoring skipped: {type(exc).__name__}: {exc}"[:500])
        return
    drift = {True: "drift detected", False: "no drift", None: "too little to judge"}
    context.log(
        f"fed {len(sample.rows)} sampled input rows to v{version}'s drift monitoring: "
        f"{drift[figures.alarms.get('drift')]}"
    )

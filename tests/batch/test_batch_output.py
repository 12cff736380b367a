"""The input found and the output written atomically, on a local root and on S3 (moto)."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pytest

from matih_ml.batch.output import AtomicParquet
from matih_ml.batch.paths import find_input, plan_output
from matih_ml.batch_spec import validate_batch
from matih_ml.errors import ValidationError

SCHEMA = pa.schema([("prediction", pa.int64()), ("model_version", pa.string())])


def spec(inp: str = "in/", out: str = "out/scores.parquet"):
    return validate_batch({"model": "m", "input": {"path": inp}, "output": {"path": out}})


def table(rows: int) -> pa.Table:
    return pa.table({"prediction": list(range(rows)), "model_version": ["1"] * rows})


def keys(s3, prefix: str) -> list[str]:
    """The objects under ``prefix`` (pyarrow's empty folder markers, ``.../``, left out)."""
    found = s3.list_objects_v2(Bucket="lake", Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in found if not o["Key"].endswith("/"))


@pytest.fixture
def lake(s3_server):
    s3 = s3_server.client()
    s3.create_bucket(Bucket="lake")
    for i in range(2):
        buffer = io.BytesIO()
        pd.DataFrame({"id": range(i * 10, i * 10 + 10), "f0": 1.5}).to_parquet(buffer)
        s3.put_object(Bucket="lake", Key=f"acme/in/part-{i}.parquet", Body=buffer.getvalue())
    s3.put_object(Bucket="lake", Key="acme-evil/in/x.parquet", Body=b"not yours")
    return s3


def test_an_s3_prefix_is_read_as_its_files(lake) -> None:
    found = find_input(spec("s3://lake/acme/in"), "s3://lake/acme")
    assert found.files == ["lake/acme/in/part-0.parquet", "lake/acme/in/part-1.parquet"]
    assert found.format == "parquet" and found.rows_total == 20
    assert found.columns == ["id", "f0"]
    relative = find_input(spec("in"), "s3://lake/acme")
    assert relative.files == found.files


def test_an_s3_path_outside_the_prefix_or_missing_is_refused(lake) -> None:
    for path in ("s3://lake/acme-evil/in/x.parquet", "s3://lake/globex/in/"):
        with pytest.raises(ValidationError) as caught:
            find_input(spec(path), "s3://lake/acme")
        assert caught.value.details["field"] == "input.path"
    with pytest.raises(ValidationError, match="not found"):
        find_input(spec("missing/"), "s3://lake/acme")


def test_s3_output_appears_whole_after_the_last_row_and_never_on_failure(lake) -> None:
    out = plan_output(spec(out="out/scores.parquet"), "s3://lake/acme", "job_0123456789abcdef")
    with AtomicParquet(out) as writer:
        writer.write(table(5))
        writer.write(table(3))
        assert keys(lake, "acme/out/scores.parquet") == []  # nothing final before commit
        writer.commit(SCHEMA)
    assert keys(lake, "acme/out/") == ["acme/out/scores.parquet"]
    body = lake.get_object(Bucket="lake", Key="acme/out/scores.parquet")["Body"].read()
    assert pd.read_parquet(io.BytesIO(body)).prediction.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]

    again = plan_output(spec(out="out/scores.parquet"), "s3://lake/acme", "job_fedcba9876543210")
    with pytest.raises(RuntimeError), AtomicParquet(again) as writer:
        writer.write(table(2))
        raise RuntimeError("the job failed")
    # The earlier output is untouched, and the failed job's temporary objects are gone.
    assert keys(lake, "acme/out/") == ["acme/out/scores.parquet"]


def test_a_local_output_is_replaced_atomically_and_an_abort_leaves_nothing(tmp_path) -> None:
    root = tmp_path / "acme"
    root.mkdir()
    out = plan_output(spec(out="scores"), str(root), "job_0123456789abcdef")
    with pytest.raises(RuntimeError), AtomicParquet(out) as writer:
        writer.write(table(4))
        raise RuntimeError("cancelled")
    assert list((root / "scores").iterdir()) == []
    with AtomicParquet(out) as writer:
        writer.commit(SCHEMA)  # an empty input: a file with the columns and no rows
    written = pd.read_parquet(root / "scores" / "part-00000.parquet")
    assert list(written.columns) == ["prediction", "model_version"] and written.empty
    assert [p.name for p in (root / "scores").iterdir()] == ["part-00000.parquet"]
    # A folder that holds files is not overwritten.
    with pytest.raises(ValidationError) as caught:
        plan_output(spec(out="scores"), str(root), "job_fedcba9876543210")
    assert caught.value.details["field"] == "output.path"


def test_a_symlink_out_of_the_local_root_is_refused(tmp_path) -> None:
    root, elsewhere = tmp_path / "acme", tmp_path / "globex"
    root.mkdir()
    elsewhere.mkdir()
    pd.DataFrame({"f0": [1.0]}).to_parquet(elsewhere / "secret.parquet")
    (root / "link").symlink_to(elsewhere)
    with pytest.raises(ValidationError) as caught:
        find_input(spec("link/secret.parquet"), str(root))
    assert caught.value.details["field"] == "input.path"
    with pytest.raises(ValidationError) as caught:
        plan_output(spec(out="link/out.parquet"), str(root), "job_0123456789abcdef")
    assert caught.value.details["field"] == "output.path"

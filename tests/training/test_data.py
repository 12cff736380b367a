"""Training tables: local and s3:// (a real moto S3 server), read by pyarrow or Ray Data.

The Ray Data path is forced with ``ray_data_min_bytes=0`` and must give exactly what the
direct path gives: the same frame, the same errors.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import MotoS3
from matih_ml.errors import ValidationError
from matih_ml.job_spec import JobSpec, validate_job
from matih_ml.training.data import read_table, table_filesystem

BUCKET = "tables"
ROOT = f"s3://{BUCKET}/training/acme"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """moto's S3 server for the module, and the environment the service reads."""
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_S3_ENDPOINT_URL", server.url)
        env.setenv("AWS_ACCESS_KEY_ID", "test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        yield client
    server.stop()


def table(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["f0", "f1", "f2"])
    return frame.assign(n=rng.integers(0, 9, rows), label=rng.integers(0, 2, rows))


def encode(frame: pd.DataFrame, name: str) -> bytes:
    buf = io.BytesIO()
    if name.endswith(".csv"):
        frame.to_csv(buf, index=False)
    else:
        frame.to_parquet(buf, index=False)
    return buf.getvalue()


def put(s3: Any, key: str, frame: pd.DataFrame) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=encode(frame, key))


def spec(path: str, **data: Any) -> JobSpec:
    return validate_job(
        {
            "name": "nightly",
            "model_name": "churn",
            "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
            "data": {"kind": "table", "path": path, "target": "label", **data},
            "evaluation": {"primary_metric": "accuracy"},
        }
    )


def unchecked(path: str) -> JobSpec:
    """A spec whose path skipped validate_job's rules: read_table must hold on its own."""
    job = spec("t.csv")
    return job.model_copy(update={"data": job.data.model_copy(update={"path": path})})


def refusal(job: JobSpec, root: str | Path, **options: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        read_table(job, root, **options)
    return caught.value


def assert_read(job: JobSpec, root: str | Path, expected: pd.DataFrame, **options: Any) -> None:
    assert_xy(read_table(job, root, **options), expected)


def assert_xy(xy: tuple[pd.DataFrame, pd.Series], expected: pd.DataFrame) -> None:
    x, y = xy
    features = [c for c in expected.columns if c != "label"]
    pd.testing.assert_frame_equal(x, expected[features].astype(np.float64))
    pd.testing.assert_series_equal(y, expected["label"])


# ---------------------------------------------------------------------------- local


@pytest.mark.parametrize("name", ["t.csv", "sub/t.parquet"])
def test_local_csv_and_parquet(tmp_path: Path, name: str) -> None:
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(encode(table(), name))
    assert_read(spec(name), tmp_path, table())
    assert_read(spec(name), str(tmp_path), table())
    assert_read(spec(name), tmp_path.as_uri(), table())  # file://, as an MLflow artifact root
    x, _ = read_table(spec(name, features=["f2", "n"]), tmp_path)
    assert list(x.columns) == ["f2", "n"]


def test_local_paths_cannot_leave_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "acme", tmp_path / "secret.csv"
    root.mkdir()
    outside.write_bytes(encode(table(), "t.csv"))
    with pytest.raises(ValidationError, match=r"'\.\.' path segments"):
        spec("../secret.csv")
    assert "leaves the data root" in refusal(unchecked("../secret.csv"), root).message
    (root / "link.csv").symlink_to(outside)
    err = refusal(spec("link.csv"), root)
    assert err.message == "data.path: leaves the data root"
    assert err.details == {"field": "data.path"}
    assert refusal(spec("nope.csv"), root).message == "data.path: 'nope.csv' not found"
    err = refusal(spec(f"{ROOT}/t.csv"), root)  # an s3:// path is never under a local root
    assert err.message.startswith("data.path: must be under the tenant's data root")


# ---------------------------------------------------------------------------- s3


def test_s3_tables_under_the_tenants_root(s3: Any) -> None:
    put(s3, "training/acme/t.parquet", table())
    put(s3, "training/acme/dir/t.csv", table(seed=1))
    assert_read(spec("t.parquet"), ROOT, table())
    assert_read(spec(f"{ROOT}/t.parquet"), ROOT + "/", table())
    assert_read(spec("dir/t.csv"), ROOT, table(seed=1))
    assert_read(spec(f"{ROOT}//dir/./t.csv"), ROOT, table(seed=1))
    fs, root = table_filesystem(ROOT)
    assert root == f"{BUCKET}/training/acme"
    assert fs.get_file_info(f"{root}/t.parquet").size > 0


@pytest.mark.parametrize(
    "path",
    [
        f"s3://{BUCKET}/training/globex/t.csv",  # another tenant
        f"s3://{BUCKET}/training/acme-evil/t.csv",  # a sibling prefix
        f"s3://{BUCKET}/training/acme.csv",  # beside the root, named like it
        f"s3://{BUCKET}/t.csv",
        "s3://other/training/acme/t.csv",
    ],
)
def test_s3_paths_outside_the_root_are_refused(s3: Any, path: str) -> None:
    if path.startswith(f"s3://{BUCKET}/"):  # there to be read, were it allowed
        put(s3, path.removeprefix(f"s3://{BUCKET}/"), table())
    err = refusal(spec(path), ROOT)
    assert err.message == f"data.path: must be under the tenant's data root {ROOT}/"
    assert err.details == {"field": "data.path"}


def test_s3_dot_dot_cannot_leave_the_root(s3: Any) -> None:
    put(s3, "training/globex/t.csv", table())
    err = refusal(unchecked(f"{ROOT}/../globex/t.csv"), ROOT)
    assert err.message.startswith("data.path: must be under")
    assert refusal(unchecked("../globex/t.csv"), ROOT).message.startswith("data.path: must be")


def test_s3_missing_object_or_store(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    err = refusal(spec("missing.parquet"), ROOT)
    assert err.message == "data.path: 'missing.parquet' not found"
    assert err.details == {"field": "data.path"}
    assert "not found" in refusal(spec("t.csv"), "s3://no-such-bucket/acme").message
    assert "a .csv or .parquet file" in refusal(spec(f"{ROOT}/t.json"), ROOT).message
    from conftest import free_port

    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    err = refusal(spec("t.parquet"), ROOT)
    assert err.message == "data.path: cannot read 't.parquet': the object store cannot be reached"
    assert err.details == {"field": "data.path"}


def test_s3_errors_name_the_path_not_the_store() -> None:
    from matih_ml.training.data import _read_error

    sdk = "When getting information for key 'a/t.csv' in bucket 'b': AWS Error {} during Head"
    denied = _read_error("t.csv", "b/a/t.csv", OSError(sdk.format("ACCESS_DENIED")))
    assert denied.message == "data.path: cannot read 't.csv': access denied"
    other = _read_error("t.csv", "b/a/t.csv", OSError(sdk.format("SLOW_DOWN")))
    assert other.message == "data.path: cannot read 't.csv': the object store answered SLOW_DOWN"


# ---------------------------------------------------------------------------- errors


def _bad_tables() -> dict[str, tuple[pd.DataFrame, str]]:
    good = table()
    text = good.astype({"f1": str})
    text.loc[30, "f1"] = "n/a?"
    holes = good.copy()
    holes.loc[5, "f2"] = np.nan
    no_label = good.astype({"label": float})
    no_label.loc[7, "label"] = np.nan
    return {
        "missing": (good.drop(columns="f0"), "data: column 'f0' is not in the table"),
        "text": (text, "data.features: column 'f1' is not numeric"),
        "hole": (holes, "data: the table has missing values"),
        "no label": (no_label, "data: the table has missing values"),
        "short": (good.head(9), "data: the table has fewer than 10 rows"),
    }


BAD = _bad_tables()


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_bad_tables(tmp_path: Path, case: str, name: str) -> None:
    frame, message = BAD[case]
    (tmp_path / name).write_bytes(encode(frame, name))
    job = spec(name, features=["f0", "f1", "f2"])
    assert refusal(job, tmp_path).message == message


def test_a_malformed_file_is_a_validation_error(tmp_path: Path) -> None:
    (tmp_path / "t.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3\n")
    assert refusal(spec("t.parquet"), tmp_path).message.startswith("data.path: cannot read")
    assert refusal(spec("t.csv"), tmp_path).message.startswith("data.path: cannot read")


# ---------------------------------------------------------------------------- Ray Data


def both_paths(job: JobSpec, root: str | Path) -> list[Any]:
    """What each path gives: (x, y), or the error's message and details."""
    outcomes = []
    for min_bytes in (2**40, 0):
        try:
            outcomes.append(read_table(job, root, ray_data_min_bytes=min_bytes))
        except ValidationError as exc:
            outcomes.append((exc.message, exc.details))
    return outcomes


def assert_same(outcomes: list[Any]) -> None:
    (a, b), (c, d) = outcomes
    if isinstance(a, str):
        assert (a, b) == (c, d)
        return
    pd.testing.assert_frame_equal(a, c, check_exact=True)
    pd.testing.assert_series_equal(b, d, check_exact=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_ray_data_reads_local_tables_alike(local_ray, tmp_path: Path, name: str) -> None:
    frame = table(rows=3000).assign(label=lambda f: np.where(f["label"] == 1, "yes", "no"))
    (tmp_path / name).write_bytes(encode(frame, name))
    outcomes = both_paths(spec(name), tmp_path)
    assert_same(outcomes)
    assert_xy(outcomes[1], frame)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_ray_data_reads_s3_tables_alike(local_ray, s3: Any, name: str) -> None:
    put(s3, f"training/acme/ray/{name}", table(rows=500, seed=2))
    outcomes = both_paths(spec(f"{ROOT}/ray/{name}"), ROOT)
    assert_same(outcomes)
    assert_xy(outcomes[1], table(rows=500, seed=2))
    missing = refusal(spec("ray/missing.csv"), ROOT, ray_data_min_bytes=0)
    assert missing.message == "data.path: 'ray/missing.csv' not found"


# A parquet read through Ray starts an actor for its footer (Ray 2.60): fewer cases.
RAY_CASES = [("t.csv", c) for c in sorted(BAD)] + [("t.parquet", c) for c in ("short", "text")]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "case"), RAY_CASES)
def test_ray_data_gives_the_same_errors(local_ray, tmp_path: Path, case: str, name: str) -> None:
    frame, message = BAD[case]
    (tmp_path / name).write_bytes(encode(frame, name))
    outcomes = both_paths(spec(name, features=["f0", "f1", "f2"]), tmp_path)
    assert_same(outcomes)
    assert outcomes[0][0] == message


@pytest.mark.slow
def test_a_late_non_number_in_a_large_csv(local_ray, tmp_path: Path) -> None:
    # Past Arrow's first 1 MiB block: Arrow alone would have typed f1 as a number.
    frame = table(rows=30_000).astype({"f1": str})
    frame.loc[29_000, "f1"] = "oops"
    (tmp_path / "t.csv").write_bytes(encode(frame, "t.csv"))
    assert (tmp_path / "t.csv").stat().st_size > 2**20
    outcomes = both_paths(spec("t.csv"), tmp_path)
    assert_same(outcomes)
    assert outcomes[0][0] == "data.features: column 'f1' is not numeric"

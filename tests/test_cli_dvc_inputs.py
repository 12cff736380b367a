"""Reading a DVC pipeline's data hashes from its dvc.lock (the registration stage's
inputs): what is recorded, what is left out, and a file that is no lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from matih_ml.cli.dvc_inputs import lock_in_pipeline, locked_outputs
from matih_ml.errors import ValidationError

LOCK = """schema: '2.0'
stages:
  prepare:
    cmd: python prepare.py
    deps:
    - path: raw.csv
      hash: md5
      md5: 11111111111111111111111111111111
    outs:
    - path: data/prepared.csv
      hash: md5
      md5: 0F343B0931126A20F133D67C2B018A3B
      size: 10
    - path: data/features
      hash: md5
      md5: 22222222222222222222222222222222.dir
    - path: s3://bucket/versioned.csv
      etag: abc
  train:
    cmd: python train.py
    outs:
    - path: data/models/run_id.json
      hash: md5
      md5: 33333333333333333333333333333333  # digits only: still a string
"""


def test_every_output_with_an_md5_but_the_run_id_file_is_an_input(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK)
    found = locked_outputs(lock, leave_out=tmp_path / "data/models/run_id.json")
    assert found == [
        {
            "name": "data/features",
            "digest": "md5:22222222222222222222222222222222",
            "uri": "data/features",
            "source_type": "dvc",
        },
        {
            "name": "data/prepared.csv",
            "digest": "md5:0F343B0931126A20F133D67C2B018A3B",
            "uri": "data/prepared.csv",
            "source_type": "dvc",
        },
    ]
    # Without a file to leave out, the run id file is data like any other.
    assert len(locked_outputs(lock)) == 3


@pytest.mark.parametrize("text", ["not: [yaml", "- a list\n", "schema: '2.0'\n"])
def test_a_file_that_is_no_lock_is_refused(tmp_path: Path, text: str) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(text)
    with pytest.raises(ValidationError):
        locked_outputs(lock)
    with pytest.raises(ValidationError):
        locked_outputs(tmp_path / "missing.lock")


def test_the_pipelines_lock_is_found_only_inside_dvc_repro(tmp_path, monkeypatch) -> None:
    (tmp_path / "dvc.lock").write_text(LOCK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert lock_in_pipeline() is None
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert lock_in_pipeline() == tmp_path / "dvc.lock"

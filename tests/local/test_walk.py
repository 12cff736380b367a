"""The helpers both doors share (contracts.walk), on a door that answers from a dict."""

from __future__ import annotations

import pytest

from matih_ml.contracts.schemas import ArtifactRead
from matih_ml.contracts.walk import ModelsWalk
from matih_ml.errors import ValidationError


class Listed(ModelsWalk):
    """list_files/read_file from a dict of path -> bytes (folders implied)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def list_files(self, model_id, version, path=None):
        prefix = f"{path}/" if path else ""
        names = [p for p in list(self.files) if p.startswith(prefix)]
        seen, out = set(), []
        for p in names:
            if p.startswith(("/", "..")):  # a hostile listing names it as it is
                out.append(ArtifactRead(path=p, is_dir=False, file_size=None))
                continue
            head = p[len(prefix) :].split("/", 1)[0]
            full = prefix + head
            if full in seen:
                continue
            seen.add(full)
            is_dir = full not in self.files
            out.append(ArtifactRead(path=full, is_dir=is_dir, file_size=None))
        return out

    def read_file(self, model_id, version, path):
        return self.files[path]


def test_download_writes_every_file_under_dest(tmp_path) -> None:
    door = Listed({"MLmodel": b"m", "model/model.pkl": b"p", "model/sub/x.txt": b"x"})
    got = door.download("churn", 1, tmp_path / "out")
    assert got == tmp_path / "out"
    assert (got / "MLmodel").read_bytes() == b"m"
    assert (got / "model" / "sub" / "x.txt").read_bytes() == b"x"
    only = door.download("churn", 1, tmp_path / "part", path="model/sub")
    assert [p.relative_to(only).as_posix() for p in only.rglob("*") if p.is_file()] == [
        "model/sub/x.txt"
    ]


@pytest.mark.parametrize("evil", ["../escape.txt", "/etc/escape.txt"])
def test_a_listing_that_climbs_out_of_dest_is_refused_and_writes_nothing(tmp_path, evil) -> None:
    door = Listed({evil: b"owned"})
    with pytest.raises(ValidationError, match="outside"):
        door.download("churn", 1, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))

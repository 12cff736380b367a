"""The scores, written beside their final path and moved there after the last row.

A job that fails or is cancelled deletes what it wrote and leaves nothing at the final
path: a reader sees the previous file, or none, never half of one. Locally the temporary
file is renamed over the final one (``os.replace``, atomic on one filesystem). On S3 an
object appears whole or not at all, so the temporary object is copied to the final key
(one server-side copy) and then deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
from types import TracebackType

import pyarrow as pa
from pyarrow import parquet as pq

from matih_ml.batch.paths import Output
from matih_ml.errors import ValidationError

log = logging.getLogger(__name__)


class AtomicParquet:
    """Write tables one after the other into ``output.temporary``; :meth:`commit` moves
    the file to ``output.final``. Leaving the ``with`` block uncommitted deletes it."""

    def __init__(self, output: Output) -> None:
        self._out = output
        self._stream: pa.NativeFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self.rows = 0
        self.committed = False

    def __enter__(self) -> AtomicParquet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.abort()

    def write(self, table: pa.Table) -> None:
        """Append ``table``; its schema must agree with the first one's.

        Raises:
            ValidationError: Predictions of another type than the first batch's.
        """
        if self._writer is None:
            self._schema = table.schema.remove_metadata()
            # On S3 the temporary object's folder is a prefix: nothing to create.
            self._stream = self._out.fs.open_output_stream(self._out.temporary)
            self._writer = pq.ParquetWriter(self._stream, self._schema)
        assert self._schema is not None
        if not table.schema.equals(self._schema, check_metadata=False):
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValidationError(
                    f"the model's output changed type between batches: {exc}"[:500],
                    details={"field": "model"},
                ) from None
        self._writer.write_table(table)
        self.rows += table.num_rows

    def commit(self, empty_schema: pa.Schema) -> None:
        """Close the file and move it to its final path (an empty input gives a file
        with ``empty_schema`` and no rows)."""
        if self._writer is None:
            self.write(empty_schema.empty_table())
        self._close()
        fs, out = self._out.fs, self._out
        if out.local:
            os.replace(out.temporary, out.final)
        else:
            fs.copy_file(out.temporary, out.final)
            self._delete_temporary()
        self.committed = True

    def abort(self) -> None:
        """Close and delete what was written; the final path is left as it was."""
        with contextlib.suppress(Exception):
            self._close()
        self._delete_temporary()

    def _close(self) -> None:
        writer, stream = self._writer, self._stream
        self._writer = self._stream = None
        if writer is not None:
            writer.close()
        if stream is not None and not stream.closed:
            stream.close()

    def _delete_temporary(self) -> None:
        delete_temporary(self._out)


def delete_temporary(out: Output) -> None:
    """Delete ``out``'s temporary file (and on S3 its prefix's marker), if it is there."""
    try:
        if out.local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out.temporary)
        else:
            with contextlib.suppress(FileNotFoundError):
                out.fs.delete_file(out.temporary)
            # The temporary prefix: S3 may hold a marker object for it.
            with contextlib.suppress(OSError):
                out.fs.delete_dir(out.temporary.rsplit("/", 1)[0])
    except OSError:
        log.warning("could not delete the temporary output %s", out.temporary, exc_info=True)

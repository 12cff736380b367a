"""A query that filters on a list of values, written for each SQL dialect.

SQLAlchemy's expanding ``IN :names`` writes one parameter per value: a 100-name list is
a new statement text each time its length changes, which psycopg converts again (about
1 ms in Python for 100 names) and PostgreSQL plans again (0.3 to 5 ms measured here). On
PostgreSQL the list goes as one array, ``= ANY(:names)``: one text whatever the length,
converted once, and prepared by psycopg after a few uses. SQLite keeps ``IN``.
"""

from __future__ import annotations

from sqlalchemy import Connection, TextClause, bindparam, text


class InList:
    """``sql`` with ``IN :param`` for each list parameter named in ``params``.

    Args:
        sql: The statement, each list written ``IN :param``.
        params: The names of the list parameters.
    """

    def __init__(self, sql: str, *params: str) -> None:
        self._expanding = text(sql).bindparams(*(bindparam(p, expanding=True) for p in params))
        for p in params:
            sql = sql.replace(f"IN :{p}", f"= ANY(:{p})")
        self._array = text(sql)

    def on(self, conn: Connection) -> TextClause:
        """The statement for ``conn``'s dialect (the lists passed as Python lists)."""
        return self._array if conn.dialect.name == "postgresql" else self._expanding

"""Batch inference jobs: a registered version scores a table on Ray Data, into parquet."""

"""``python -m matih_ml.cli``."""

from matih_ml.cli import app

app()

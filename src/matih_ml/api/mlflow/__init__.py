"""MLflow's REST protocol, served by matih-ml (see :mod:`.door`)."""

"""matih-ml: the MATIH ML Service, a multi-tenant experiment tracker and model registry."""

__version__ = "0.1.0"

"""Deployments of the service: the top layer, beside the API it deploys.

- :mod:`~matih_ml.deploy.ray_app`: the API, and so the PredictionService, as a Ray Serve
  application (``matih-ml serve-models --ray``).
"""

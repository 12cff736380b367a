"""Serving registered versions by stage, alias or number: ``serving.service``."""

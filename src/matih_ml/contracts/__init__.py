"""What the REST API and its clients agree on: the wire types and one contract per domain.

``schemas`` holds the request and response bodies, ``names`` the vocabularies (stages,
frameworks, roles, statuses), ``policy`` the promotion policy's body and ``protocols``
the typed contracts that the HTTP client (``matih_ml.client``) implements.

Nothing here imports FastAPI, Starlette, MLflow or the service's own layers (``api``,
``cli``, ``services``, ``registry``, ``store``): a client that imports these types must
not pay for the server (importing the registry alone takes seconds and pulls FastAPI).
"""

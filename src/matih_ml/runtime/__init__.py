"""Where a tenant's model runs, and what is checked before it does.

A tenant's model files are untrusted input. :mod:`.files` keeps every path an
``MLmodel`` names inside the model's own folder; :mod:`.formats` tells data formats
(loaded in the service) from code-bearing ones (loaded only in :mod:`.sandbox`);
:mod:`.loader` is the one way the service loads a tenant's model.
"""

"""One router per resource: authorize, call a service, convert. Nothing else."""

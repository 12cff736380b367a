"""Training jobs: what a tenant may ask the service to train, and (later) how it runs on Ray."""

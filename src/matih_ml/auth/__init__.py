"""Authentication (API keys, JWTs) and authorization (roles), in one place."""

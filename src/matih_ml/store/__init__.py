"""The service's own tables (API keys now; audit, approvals and the outbox later)."""

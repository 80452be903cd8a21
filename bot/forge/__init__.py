"""Forges: where a ChangePlan becomes a pull request (local SQLite records, or GitHub)."""

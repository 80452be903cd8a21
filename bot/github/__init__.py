"""GitHub as fluxbot's forge: the REST adapter (forge), webhook intake (webhooks), the change
gate (gate), how the gate is reported (checks: commit status or check run), and GitHub's
vocabulary named once (vocabulary)."""

"""fluxbot adapters (git, forge, store, chat transports) and their wiring."""

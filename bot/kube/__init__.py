"""Kubernetes and Flux: client (the only module calling the API), informers (shared caches),
chain (the pure verdict), follower (after a merge), flux (the vocabulary)."""

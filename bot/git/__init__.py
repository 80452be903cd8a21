"""The git adapter: the mirror workspace (`workspace`), rendering as Flux applies (`render`),
schema validation of what renders (`schemas`) and the quality gates run before a push (`checks`)."""

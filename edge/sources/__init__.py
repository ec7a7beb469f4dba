"""Source drivers: one module per protocol, each the only importer of its protocol library."""

"""CLI command groups, one module per area; `ttcl.cli` assembles them."""

"""The session the CLI calls: one function per command, the orchestration that needs
several layers (search, then package, test and register)."""

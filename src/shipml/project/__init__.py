"""The session layer the CLI calls: one function per command, the orchestration that
needs several layers (search, then package, test and register; monitor; import). The
product's rules live in the library, once."""

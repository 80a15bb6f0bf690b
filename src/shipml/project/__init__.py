"""The session the CLI calls: one function per command, the product's rules in one place."""

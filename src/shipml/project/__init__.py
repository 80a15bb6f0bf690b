"""The session layer the CLI calls: one function per command, orchestrating the layers
below (the product's rules live in the library, once)."""

"""The session the CLI calls: one function per command, and the product's rules that
span several layers (promotion through the gates, model references, the gateway's
assembly; search, then package, test and register; monitor; import) in one place. A
command parses its options, calls one function here and renders the result; Python can
call the same functions.
"""

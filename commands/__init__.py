"""The CLI's command groups, one module a group; `cli.py` composes them into the `agent` app.

Each module parses its options, calls the runtime and renders the result; `options` declares the
shared options (the run settings once), `output` holds the rendering and the one error edge,
`cli_face` words the runtime's errors with the CLI's flags and commands, `progress` is the live
display and `terminal` makes text safe to print.
"""

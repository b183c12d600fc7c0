"""Typed state schemas, one module per graph family, and the run context they share."""

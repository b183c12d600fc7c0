"""Typed state schemas, one module per graph family, and the run context they share.

The TypedDicts come from `typing_extensions`: pydantic, which turns the schemas into JSON Schema
for LangGraph's server (Studio's input form, `/assistants/{id}/schemas`), refuses `typing.TypedDict`
before Python 3.12.
"""

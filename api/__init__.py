"""The HTTP face (`agent serve`): the part of the LangGraph Server API that `langgraph-sdk` and
`RemoteGraph` use, our own endpoints beside it (`/agent/...`), Server-Sent Event streams, and the
dashboard's assets. Like the CLI it parses, calls the runtime and renders; what a run does, and
every check of its input, is the runtime's.
"""

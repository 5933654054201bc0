"""The read API: JSON over HTTP on `query.endpoint` (/api/v1/...), in the same daemon as ingestion.

One module per endpoint group (`traces`, `spans`, `sessions`, `usage`, `points`, `models`), each with
its parameters declared once (`params.Param`: the parser and the OpenAPI document both read them) and
pure functions that build SQL and shape rows into answers. `server.py` is the only I/O: the aiohttp
routes, authentication, the connection pool with its statement timeout, metrics and error statuses.
"""

"""A check of ours for the fuzzing of `agent serve`'s OpenAPI document (tests/test_serve_guard.py):
no answer's body carries a traceback."""

import schemathesis


@schemathesis.check
def no_traceback_in_body(ctx, response, case) -> None:
    text = response.text or ""
    if "Traceback (most recent call last)" in text or 'File "/' in text:
        raise AssertionError("a traceback in the response body")

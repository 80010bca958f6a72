"""Schemathesis hooks for `api/tests/schemathesis.rs`.

Long waits are valid requests, and the server honours them: a start with
`waitMs` waits for the execution to end, a task poll for a task to come.
A run sends hundreds of them, so each wait is shortened here to at most
`WAIT_MS_MAX` before it is sent, which keeps the run's length bounded.
Only values inside the documented range are shortened (to values still
inside it): a value the document refuses is sent as generated, so
negative cases still test that it is refused.

The run's own admin token (its name in `RETRACE_ST_TOKEN_NAME`) is never
revoked: a listing of tokens shows its name, and schemathesis follows such
names into `DELETE /v1/tokens/{name}`, which would lock the rest of the run
out. That one name is sent as another (which names no token: `404`).
"""

import os

import schemathesis

WAIT_MS_MAX = 200
U64_MAX = 2**64 - 1

# operation id -> (path to the field in the body, largest valid value)
WAITS = {
    "startExecution": ((), 60_000),
    "pollTasks": ((), U64_MAX),
    "completeTask": (("poll",), U64_MAX),
}


def _shorten(body, largest):
    value = body.get("waitMs")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if 0 <= value <= largest and value == int(value) and value > WAIT_MS_MAX:
        body["waitMs"] = type(value)(WAIT_MS_MAX)


ADMIN = os.environ.get("RETRACE_ST_TOKEN_NAME")


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation.definition.raw.get("operationId")
    params = case.path_parameters or {}
    if operation == "revokeToken" and ADMIN and params.get("name") == ADMIN:
        params["name"] = ADMIN + "-kept"
        url = kwargs.get("url")
        if isinstance(url, str) and url.endswith("/v1/tokens/" + ADMIN):
            kwargs["url"] = url + "-kept"
    wait = WAITS.get(operation)
    if wait is None:
        return
    path, largest = wait
    body = case.body
    for key in path:
        body = body.get(key) if isinstance(body, dict) else None
    if isinstance(body, dict):
        _shorten(body, largest)

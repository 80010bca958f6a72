"""Schemathesis hooks for `api/tests/schemathesis.rs`.

Long waits are valid requests, and the server honours them: a start with
`waitMs` waits for the execution to end, a task poll for a task to come.
A run sends hundreds of them, so each wait is shortened here to at most
`WAIT_MS_MAX` before it is sent, which keeps the run's length bounded.
Only values inside the documented range are shortened (to values still
inside it): a value the document refuses is sent as generated, so
negative cases still test that it is refused.
"""

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


@schemathesis.hook
def before_call(context, case, kwargs):
    wait = WAITS.get(case.operation.definition.raw.get("operationId"))
    if wait is None:
        return
    path, largest = wait
    body = case.body
    for key in path:
        body = body.get(key) if isinstance(body, dict) else None
    if isinstance(body, dict):
        _shorten(body, largest)

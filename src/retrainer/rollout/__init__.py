"""Safe rollout: a passing challenger serves a share of requests as the `canary` before it
becomes champion, and a new champion is watched for a while after.

`routing` picks the model of each request (serving imports it, so this package imports
nothing at its top); `logs` reads the request and row logs that every server writes;
`guardrails` turns a window of them (and `feedback`, labelled rows scored offline) into
lines that hold, wait or trip; `start` is how a passing challenger becomes the canary;
`lifecycle` judges a running canary and the guard after promotion each time `watch`
evaluates, and completes, aborts or rolls back through `retrainer.registry`.
"""

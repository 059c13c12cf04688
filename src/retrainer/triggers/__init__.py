"""Deciding when to retrain: `retrainer watch`.

One module per check (schedule, new_version, drift, performance) returns `fire.Fire`s;
`state` keeps them in the tracking store; `watcher` ticks; `daemon` loops; `webhooks` wakes.
"""

"""The names retrainer gives things in the registry: tag prefix, aliases, legacy stages."""

PREFIX = "retrainer."
JOURNAL_TAG = f"{PREFIX}promotion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
LEGACY_PRODUCTION = "Production"
LEGACY_ARCHIVED = "Archived"
CANARY = "canary"
#: The registered-model tag of a running canary (JSON): version, champion, since, state.
ROLLOUT_TAG = f"{PREFIX}rollout"

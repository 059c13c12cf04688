"""The names retrainer gives things in the registry: tag prefix, aliases, legacy stages."""

PREFIX = "retrainer."
JOURNAL_TAG = f"{PREFIX}promotion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
LEGACY_PRODUCTION = "Production"
LEGACY_ARCHIVED = "Archived"

"""Error types. Messages name the file, field, rule and value so a user can fix the input."""


class LLMRecError(Exception):
    """Base class: anything llmrec reports to a user as a clear one-line problem."""


class ConfigError(LLMRecError):
    """A config file, key or value is wrong."""


class DataError(LLMRecError):
    """An input data file (interactions, items, candidates, histories) is malformed or inconsistent."""


class AssetError(LLMRecError):
    """An embedded asset cannot be fetched, verified or built."""


class TemplateError(LLMRecError):
    """A prompt template cannot be loaded or rendered."""

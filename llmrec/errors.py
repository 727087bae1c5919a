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


class RequestError(LLMRecError):
    """A request the ranking or chat service refuses: HTTP `status`, the `field` at fault (a JSON
    path such as `history[3].item_id`) and why. The HTTP layer turns it into a 4xx body; the
    terminal front-ends print it like any other error."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message

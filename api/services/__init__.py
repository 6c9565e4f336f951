"""Service logic: plain functions over a Session; they never see HTTP types."""


class NotFound(LookupError):
    """The resource does not exist or belongs to another owner (the same answer for both)."""


class Conflict(RuntimeError):
    """The request is valid but the resource's state does not allow it now."""

"""The one exception type users see. The CLI prints its message (no traceback) and exits with its code."""


class ChatforgeError(Exception):
    """A problem the user can fix: bad input, a missing model, a full disk.

    `exit_code` is 2 for bad input (the default), 1 for failures that are not the input's fault.
    `hint` is printed on its own line after the message: what to do about it.
    """

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 2):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


def json_error(e) -> str:
    """A json.JSONDecodeError as a user reads it, with its column: some of json's messages already end in "at"
    ("Unterminated string starting at"), so "at" is not added twice."""
    return f"{e.msg} column {e.colno}" if e.msg.endswith(" at") else f"{e.msg} at column {e.colno}"

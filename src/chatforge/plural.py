"""Counts in messages: "1 row", "2 rows", "0 errors" (a count and its noun agree)."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"

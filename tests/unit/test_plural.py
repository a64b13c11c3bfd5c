"""Counts and their nouns agree in messages."""

from chatforge.plural import counted


def test_one_is_singular_and_every_other_count_plural():
    assert [counted(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]
    assert counted(1, "invalid preference record") == "1 invalid preference record"
    assert counted(3, "entry", "entries") == "3 entries"

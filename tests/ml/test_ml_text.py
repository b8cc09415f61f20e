"""text_problem: why a text cannot be classified, or None."""
from __future__ import annotations

import pytest

from worker.ml.text import text_problem


def test_an_ordinary_text_has_no_problem():
    assert text_problem("A perfectly ordinary review.", max_chars=100) is None


@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n"])
def test_empty_or_whitespace_text_is_refused(text):
    assert text_problem(text, max_chars=100) == "text is empty or whitespace"


@pytest.mark.parametrize("text", ["abc\x00def", "\x00", "   \x00   "])
def test_text_with_a_nul_byte_is_refused_for_the_nul(text):
    assert text_problem(text, max_chars=100) == "text contains NUL bytes"


def test_text_longer_than_the_limit_is_refused_with_both_lengths():
    problem = text_problem("x" * 11, max_chars=10)

    assert problem == "text is longer than 10 characters (11)"


def test_text_exactly_at_the_limit_is_accepted():
    assert text_problem("x" * 10, max_chars=10) is None


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["a list"]])
def test_a_value_that_is_not_a_string_is_refused(value):
    assert text_problem(value, max_chars=100) == "text is not a string"

"""Patterns that request schemas put on text fields, and what a person reads instead of the regex.

Its own module: both api.schemas (the fields) and api.errors (the messages) need it, and errors is
imported while schemas loads.
"""
VISIBLE_TEXT = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
PATTERN_MEANINGS = {VISIBLE_TEXT: "is blank or contains a control character (NUL, newline, ...); give printable "
                                  "text with at least one visible character"}

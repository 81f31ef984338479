"""Great Expectations suites that gate the raw tables: one JSON file per suite, one folder per stream."""

from expectations.suites import InvalidSuite, UnknownSuite, load_suite, stream_suites
from expectations.validation import ExpectationOutcome, SuiteOutcome, combine, validate, validate_suite

__all__ = [
    "ExpectationOutcome",
    "InvalidSuite",
    "SuiteOutcome",
    "UnknownSuite",
    "combine",
    "load_suite",
    "stream_suites",
    "validate",
    "validate_suite",
]

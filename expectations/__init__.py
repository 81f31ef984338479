"""Great Expectations suites that gate the raw tables: one JSON file per suite, one folder per stream."""

from expectations.suites import UnknownSuite, load_suite, stream_suites
from expectations.validation import ExpectationOutcome, SuiteOutcome, combine, validate

__all__ = ["ExpectationOutcome", "SuiteOutcome", "UnknownSuite", "combine", "load_suite", "stream_suites", "validate"]

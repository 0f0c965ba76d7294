"""ttcl: the test-time compute language."""

__version__ = "0.1.0"

"""Fixtures shared by the service tests."""
from tests.services.runner_helpers import downstream  # noqa: F401  (the loopback CRM/email stand-in)

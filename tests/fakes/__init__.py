"""Local stand-ins for external services, run for real by the tests (no mocks of our own code)."""

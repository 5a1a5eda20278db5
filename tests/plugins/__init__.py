"""Fixture plugins registered by tests/conftest.py (`pytest_plugins`): test modules request these fixtures
by name and never import them."""

"""The fast tier: pure functions, no stack. A unit test that asks for the stack (directly or through a fixture
such as openai_api) is refused at collection, so `make unit` stays a few seconds and needs no server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
STACK_FIXTURES = {"stack", "engine"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = [item.nodeid for item in items if HERE in Path(str(item.path)).resolve().parents
             and STACK_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if wrong:
        raise pytest.UsageError("unit tests must not use the stack (move them next to the integration tests in "
                                "tests/): " + ", ".join(wrong))


# A DATABASE_URL that nothing connects to: settings need one to load, unit tests never open it.
UNUSED_DATABASE = "postgresql://unit-tests@127.0.0.1:9/never-opened"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """environment(NAME=value, ...): the process settings read from exactly these variables (plus an unused
    DATABASE_URL), as a deployment's environment would set them; the cached settings are dropped around it."""
    from shared.core.settings import get_settings

    def configure(**variables: str) -> None:
        monkeypatch.setenv("DATABASE_URL", UNUSED_DATABASE)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    configure()
    yield configure
    monkeypatch.undo()
    get_settings.cache_clear()

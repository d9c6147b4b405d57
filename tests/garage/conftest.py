import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Upper layers run on trio, the node's runtime."""
    return "trio"

"""The service deployed once for the package: API keys in the session storage, and an HTTP client with an admin key."""
import httpx
import pytest

from .helpers import free_port


@pytest.fixture(scope="package")
def keys(storage):
    """API keys in the storage's key file: every scope, generate alone, and a rate-limited one."""
    from genray.services import auth

    path = storage.path(auth.KEYS_FILE)
    return {"admin": auth.add_key(path, "test-admin", list(auth.SCOPES)),
            "generate": auth.add_key(path, "test-generate", ["generate"]),
            "slow": auth.add_key(path, "test-slow", ["generate"], rate_per_s=0.5, burst=2)}


@pytest.fixture(scope="package")
def client(trained, storage, keys):
    from ray import serve

    from genray.services.app import deploy, undeploy

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy(storage.uri)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                      headers={"Authorization": f"Bearer {keys['admin']}"}) as c:
        yield c
    undeploy("genray")

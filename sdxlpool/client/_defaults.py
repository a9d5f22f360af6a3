"""Where the client finds the gateway and its API key when not told: shared by `_cli` and `_ws`."""

__all__ = ["DEFAULT_GATEWAY", "GATEWAY_ENV", "API_KEY_ENV"]

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
GATEWAY_ENV = "SDXLPOOL_GATEWAY_URL"
API_KEY_ENV = "SDXLPOOL_API_KEY"

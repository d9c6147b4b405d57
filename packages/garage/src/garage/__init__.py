"""The Garage node binary and its command-line interface (console script ``garage``)."""

__all__: list[str] = []

"""Pipelines: ordered stages over typed data, shared by the server, the CLI and the tests."""

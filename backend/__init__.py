"""Recast 4D compute backend: server, job store, pipelines and their stages."""

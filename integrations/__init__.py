"""Integrations of admission with Nemesis-style pipelines."""

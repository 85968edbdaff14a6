"""Shared by every stage: user errors, checks and limits, the registry, provenance (atomic writes, code hashes),
MLflow tracking, progress bars and shared names. May import: nothing else from selfsup.
"""

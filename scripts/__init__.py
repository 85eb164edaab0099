"""Repository scripts (run from the repo root); importable for their tests."""

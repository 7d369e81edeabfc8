"""Render and parse the files helpers write or read: pure functions, no tools."""

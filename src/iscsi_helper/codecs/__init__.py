"""Render and parse the files helpers write and read: pure functions, no tool, no I/O.

One module per format. A parser is strict (it accepts what its renderer
writes and what Cinder wrote, nothing looser) and names the file in its
errors; a renderer's output parses back to what it was given.
"""

"""Tool-free unit tests of the wire target's rule-bearing modules, one test module per source module."""

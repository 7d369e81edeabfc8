"""One typed adapter per target admin tool: the only place that tool's command lines exist.

An adapter turns a helper's intent (``target_new(tid, iqn)``) into argv,
runs it through the executor, and turns the tool's exit codes and
refusals into the exceptions of :mod:`iscsi_helper.exception`, so helpers
decide on exception types, never on exit numbers or stderr phrases. Tool
output is parsed by pure functions beside the calls, or in a codec when it
is a format of its own (``codecs/iscsictl_output.py``), tested without the
tool.
"""

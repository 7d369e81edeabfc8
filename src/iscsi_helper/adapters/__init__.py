"""One typed adapter per target admin tool: the only place that tool's command lines exist."""

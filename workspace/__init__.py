"""Persistence and the command line: result caches, the demo builder, the ``glassbox`` CLI."""

"""Subcommands of ``mmssl``, one module each (see ``mmssl.cli``)."""

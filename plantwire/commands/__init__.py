"""Subcommands of ``plantwire`` that live in the shared package (the others register through
the ``plantwire.commands`` entry point group, so ``plantwire`` never imports edge or gateway)."""

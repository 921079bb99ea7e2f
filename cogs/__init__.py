"""Slash-command extensions: each module is a thin Discord adapter ending in ``setup(bot)``."""

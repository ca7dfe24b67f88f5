"""Modules that fail when a worker imports them (tests of import and definition errors)."""

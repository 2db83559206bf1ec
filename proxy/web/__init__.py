"""Patron pages: templates, static files and every string patrons read."""

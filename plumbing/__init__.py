"""Plumbing shared by every package: command-line helpers, atomic I/O and provenance, input
validation, progress bars and dataset loading. No mathematics lives here (see ``theory``)."""

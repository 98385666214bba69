"""Unit file and installer data shipped with the package (see README.md here)."""

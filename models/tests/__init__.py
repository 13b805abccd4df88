"""Tests of the offline tooling (`python -m unittest discover -s models/tests -t .` from the
checkout's root)."""

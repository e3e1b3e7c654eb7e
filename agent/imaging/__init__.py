"""Forensic images of block devices: ``preserve image`` and its output formats."""

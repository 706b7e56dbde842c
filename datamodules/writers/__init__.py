"""Formats the framework writes but does not read (``ptx predict``'s DICOM SEG)."""

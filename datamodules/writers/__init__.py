"""Files ``ptx predict`` writes: DICOM SEG objects and PNGs (the NIfTI masks are written by
``readers.nifti.write_nifti``, beside the reader of that format)."""

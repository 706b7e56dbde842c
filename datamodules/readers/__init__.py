"""One reader per format: DICOM (series and radiographs), NIfTI, RLE CSV, PNG."""

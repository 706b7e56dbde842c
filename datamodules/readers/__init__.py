"""File-format readers, each decoding one file or one series: DICOM (``dicom``, series in
``dicom_series``, multi-frame in ``dicom_enhanced``), NIfTI, radiographs (DICOM or PNG, and
mask PNGs: ``radiograph``) and the SIIM RLE CSV. Finding the files is ``datamodules.layouts``."""

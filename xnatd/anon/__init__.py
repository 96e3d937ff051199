"""Anonymization (SPEC sections 6 and 10.1): DicomEdit 6 scripts as XNAT runs them, and
DICOM PS3.15's Basic Application Level Confidentiality Profile with its options.

``tagpath`` <- ``language`` <- ``context`` <- ``functions`` <- ``script`` <- ``engine``:
tag paths, the language's values, one run over a dataset, the function table, the
parser (grammar in ``de6.lark``), and ``run``. ``profile`` and ``ps315_table`` are the
PS3.15 profile; ``chain`` applies scripts and profiles in the order configured;
``apply`` runs them over a received file's bytes.
"""

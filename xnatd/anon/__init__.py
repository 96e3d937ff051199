"""DicomEdit 6 anonymization (SPEC section 6): not built yet.

Until it is, a configuration that names a script is refused by ``check-config``
rather than running without the anonymization the site asked for.
"""

"""The receivers (SPEC section 2): DICOM associations on pynetdicom, the data phase read
natively, and what xnatd changes inside pynetdicom (``hooks``, installed by one call).
A received file goes to ``xnatd.intake``; nothing here writes to the store."""

"""The last stage (SPEC section 5): from a READY prearchive session to the archive."""

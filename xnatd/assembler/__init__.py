"""Assembly (SPEC section 4): the idle sweeper, the session build, and the pixel check
that runs beside it at low priority."""

"""What every part of the data layer shares: atomic file writes (``io.atomic``) and the one
exception type for bad input (``io.errors.DataError``)."""

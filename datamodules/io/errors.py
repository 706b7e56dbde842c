"""The one exception type the data layer raises for bad input."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad, unreadable or inconsistent input data.

    The message names the culprit (file, CSV row, patient key) and says what to do.
    ``path``, ``row`` and ``patient`` are kept as attributes for programs that handle it.
    Never put a patient identifier (name, ID, birth date, accession number) in it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        patient: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.row = row
        self.patient = patient
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if patient is not None:
            where.append(f"patient {patient}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)

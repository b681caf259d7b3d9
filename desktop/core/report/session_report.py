"""A session's AssayReport: the one source of every figure the GUI, the CLI and the LIS get. A report
reads a session (its record, cells and audit); the session never builds its report, so the records layer
does not reach up into the report layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from desktop.core.records.domain import Cell, now
from desktop.core.report.assay_report import AssayReport, build_report
from desktop.core.report.codes import ResultCode, load_codes

if TYPE_CHECKING:
    from desktop.core.records.session import Session


def session_report(session: Session, *, target: int | None = None, operator: str = "", when: str | None = None,
                   codes: dict[str, ResultCode] | None = None, cells: list[Cell] | None = None,
                   with_history: bool = True) -> AssayReport:
    """`codes` default to the lab's table; the GUI panel passes the cells it holds and `with_history=False`
    (no audit read, no gallery, no integrity check) on every refresh. Every export and the LIS hand-off
    check the record again, now."""
    if with_history:
        session.check_integrity()
    record = session.record()
    return build_report(session.cells() if cells is None else cells, session.info, record,
                        audit=session.audit() if with_history else (), changes=session.pending_changes,
                        target=record.target if target is None or record.signed else target,
                        codes=load_codes() if codes is None else codes, generated_at=now() if when is None else when,
                        generated_by=operator, with_gallery=with_history)

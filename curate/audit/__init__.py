"""Data audits: where rows went, what each teacher wrote, what the hard problems look like.

    from curate.audit import Audit, render_report
    audit = Audit.open("runs/my-run")      # or a published version folder
    audit.funnel(); audit.teachers(); audit.bands(); audit.samples(per_band=3)
    render_report(audit, "report.html")
"""

from curate.audit.report import audit_command, render_report
from curate.audit.tables import Audit, AuditError

__all__ = ["Audit", "AuditError", "audit_command", "render_report"]

"""Evaluation reports: per-case CSV, summary JSON, HTML and Markdown with figures (matplotlib, Agg backend)."""

from medseg.reports.writer import REPORT_FILES, ReportError, rank_cases, write_report

__all__ = ["REPORT_FILES", "ReportError", "rank_cases", "write_report"]

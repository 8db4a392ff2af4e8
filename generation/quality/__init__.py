"""The selfie quality gate: checks, report, crop and preview."""

from generation.quality.gate import Assessment, assess
from generation.quality.report import CheckResult, CropBox, QualityReport, Tier

__all__ = ["Assessment", "CheckResult", "CropBox", "QualityReport", "Tier", "assess"]

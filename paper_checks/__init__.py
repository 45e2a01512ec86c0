"""Every checkable claim of the two papers: claimed value (from the paper), measured value (from
our code or committed results), verdict. See ``paper_checks.registry``."""
from .registry import Claim, Measured, NeedsData, claims, register, run_claims  # noqa: F401

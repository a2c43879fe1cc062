"""A correctness oracle for other MAML implementations: ``derivations/oracle.md``.

* :func:`check` runs a user's ``fn`` on refmaml's cases and judges it;
* :mod:`.vectors` writes and reads the test vectors (JSON and ``.npz``);
* the diagnosis names the known bug an implementation's answers match.
"""

from .answers import DIAGNOSES, Answer
from .cases import VERSION, Case, all_cases
from .judge import MESSAGES, TOLERANCE, CaseResult, Report, check, format_report

__all__ = ["DIAGNOSES", "MESSAGES", "TOLERANCE", "VERSION", "Answer", "Case", "CaseResult", "Report",
           "all_cases", "check", "format_report"]

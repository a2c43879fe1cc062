"""A correctness oracle for other MAML implementations: ``derivations/oracle.md``.

* :func:`check` runs a user's ``fn`` on refmaml's cases and judges it;
* :mod:`.vectors` writes and reads the test vectors (JSON and ``.npz``);
* the diagnosis names the known bug an implementation's answers match.
"""

from .answers import DIAGNOSES, Answer
from .cases import VERSION, VERSIONS, Case, all_cases
from .checks import check, check_file
from .judge import CONDITIONS, TOLERANCE, VERDICTS
from .messages import MESSAGES
from .report import CaseResult, Report, as_dict, format_report

__all__ = ["CONDITIONS", "DIAGNOSES", "MESSAGES", "TOLERANCE", "VERDICTS", "VERSION", "VERSIONS", "Answer", "Case",
           "CaseResult", "Report", "all_cases", "as_dict", "check", "check_file", "format_report"]

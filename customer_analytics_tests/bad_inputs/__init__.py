"""The bad-input corpus: one small landing file (or a few) per class of bad input, each paired with its expected outcome.

The files are generated, not committed: encodings, byte-order marks, NUL bytes and odd file
names survive no editor or git setting, and the huge lines (5 and 9 MB) must never be
committed. `corpus.CASES` is the manifest; `python -m customer_analytics_tests.bad_inputs DIR`
writes the corpus into a landing folder to look at (add `--huge` for the huge-line cases).
"""

from customer_analytics_tests.bad_inputs.corpus import CASES, REQUIRED_CLASSES, Case, write_corpus

__all__ = ["CASES", "REQUIRED_CLASSES", "Case", "write_corpus"]

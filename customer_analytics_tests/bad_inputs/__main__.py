"""Write the bad-input corpus into a landing folder: `python -m customer_analytics_tests.bad_inputs DIR [--huge]`."""

from __future__ import annotations

import argparse
import json

from customer_analytics_tests.bad_inputs.corpus import CASES, write_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="landing folder to write (events/ and transactions/ are created in it)")
    parser.add_argument("--huge", action="store_true", help="also write the huge-line cases (about 40 MB)")
    args = parser.parse_args()
    cases = [case for case in CASES if args.huge or not case.huge]
    write_corpus(args.out, cases)
    print(json.dumps([case.summary() for case in cases], indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()

"""`python -m analytics`: print the headline table of a warehouse (the report has the figures)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from analytics.source import open_warehouse, require_experiment
from analytics.summary import format_headline, headline
from warehouse.db import WarehouseError
from warehouse.errors import UserError
from warehouse.settings import add_warehouse_argument


def main(argv: Sequence[str] | None = None) -> int:
    """Print the headline; exit status 2 for a warehouse problem the user can fix."""
    parser = argparse.ArgumentParser(
        prog="python -m analytics",
        description="Print CoF by pair and method, the scaling-law fit, entropy AUROC and early share.",
        epilog="figures and report.md: python -m analytics.report --help",
    )
    add_warehouse_argument(parser)
    parser.add_argument("--experiment", help="the experiment to summarise (default: the most recent)")
    args = parser.parse_args(argv)
    try:
        con = open_warehouse(args.warehouse)
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        require_experiment(con, args.experiment)
        print(format_headline(headline(con, args.experiment)))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

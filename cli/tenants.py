"""`aijobs tenants set`: change an existing tenant's limits and its share of the workers
from the command line (`aijobs keys create` sets them too, but issues a key each time)."""

from __future__ import annotations

import argparse
import getpass
import json
from decimal import Decimal, InvalidOperation
from typing import Any

NONE = "none"


def _or_none(kind: type[int] | type[Decimal]) -> Any:
    """An argparse type: a number, or `none` to clear the limit."""

    def parse(value: str) -> int | Decimal | None:
        if value.strip().lower() == NONE:
            return None
        try:
            return kind(value)
        except (ValueError, InvalidOperation):
            raise argparse.ArgumentTypeError(f"{value!r} is not a number or {NONE}") from None

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tenants = sub.add_parser("tenants", help="tenants' limits")
    commands = tenants.add_subparsers(dest="tenants_command", required=True)
    change = commands.add_parser(
        "set", help="change an existing tenant's limits (only those given; none clears one)"
    )
    change.add_argument("name", metavar="NAME", help="the tenant's name or id")
    change.add_argument(
        "--weight", type=int, default=argparse.SUPPRESS, help="its share of the workers, 1-1000"
    )
    change.add_argument(
        "--max-inflight",
        type=_or_none(int),
        default=argparse.SUPPRESS,
        metavar="N|none",
        help="its calls in flight across all workers, 1-100000; none: no cap",
    )
    change.add_argument("--rpm", type=_or_none(int), default=argparse.SUPPRESS, metavar="N|none")
    change.add_argument(
        "--daily-budget", type=_or_none(Decimal), default=argparse.SUPPRESS, metavar="USD|none"
    )
    change.add_argument(
        "--monthly-budget", type=_or_none(Decimal), default=argparse.SUPPRESS, metavar="USD|none"
    )
    change.set_defaults(func=cmd_tenants_set)


# The flags as the limits they set (update_limits' names).
_FLAGS = {
    "weight": "weight",
    "max_inflight": "max_inflight",
    "rpm": "rpm",
    "daily_budget": "daily_budget_usd",
    "monthly_budget": "monthly_budget_usd",
}


def cmd_tenants_set(args: argparse.Namespace) -> int:
    from aijobs.db import session_scope
    from aijobs.money import usd
    from aijobs.tenants import audit
    from aijobs.tenants.service import LIMITS, share_now, tenant_by_ref, update_limits

    given = vars(args)  # a flag not given is absent (SUPPRESS), `none` is None
    changes = {limit: given[flag] for flag, limit in _FLAGS.items() if flag in given}
    if not changes:
        raise RuntimeError("tenants set needs at least one limit to change")
    with session_scope() as session:
        tenant = tenant_by_ref(session, args.name)
        update_limits(session, tenant, changes)
        shown = {k: None if v is None else str(v) for k, v in changes.items()}
        audit.record(
            session, "tenant.update", f"cli:{getpass.getuser()}", tenant=tenant.name, changes=shown
        )
        tenant_id, name = tenant.id, tenant.name
        limits = {limit: getattr(tenant, limit) for limit in LIMITS}
    if changes.keys() & {"weight", "max_inflight"}:
        share_now(tenant_id, limits["weight"], limits["max_inflight"])
    shown_limits = {k: usd(v) if isinstance(v, Decimal) else v for k, v in limits.items()}
    print(json.dumps({"tenant": name, **shown_limits}))
    return 0

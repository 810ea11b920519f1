"""Tenants' keys and webhook secrets from the command line."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_keys_create(args: argparse.Namespace) -> int:
    from aijobs.db import session_scope
    from aijobs.tenants.service import create_key, share_now, tenant_by_ref

    with session_scope() as session:
        issued = create_key(
            session,
            args.tenant,
            daily_budget=args.daily_budget,
            monthly_budget=args.monthly_budget,
            rpm=args.rpm,
            weight=args.weight,
            max_inflight=args.max_inflight,
        )
        tenant = tenant_by_ref(session, args.tenant)
        share = (tenant.id, tenant.weight, tenant.max_inflight)
    if args.weight is not None or args.max_inflight is not None:
        share_now(*share)  # committed: effective at once in the fair queue
    print(
        json.dumps(
            {
                "tenant": issued.tenant,
                "api_key": issued.api_key,
                "webhook_secret": issued.webhook_secret,
            }
        )
    )
    return 0


def cmd_keys_rotate_webhook_secret(args: argparse.Namespace) -> int:
    from aijobs.db import session_scope
    from aijobs.errors import NotFound
    from aijobs.tenants.service import rotate_webhook_secret

    try:
        with session_scope() as session:
            rotated = rotate_webhook_secret(session, args.tenant)
    except NotFound as exc:
        print(f"aijobs: {exc.detail}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "tenant": rotated.tenant,
                "webhook_secret": rotated.webhook_secret,
                "previous_secret_expires_at": rotated.previous_secret_expires_at.isoformat(),
            }
        )
    )
    return 0

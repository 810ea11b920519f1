"""Billing: model prices, budgets (the reservation rule and the check at submit), and
the usage ledger read back."""

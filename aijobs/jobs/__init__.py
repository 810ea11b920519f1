"""Jobs: the request schema, submission, the state machine (transitions.py), the job
view, the sweeper's rules, and the operator's triage."""

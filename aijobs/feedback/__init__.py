"""Feedback: what users, reviewers and code say about a job's result, kept with the job
and aggregated per prompt version in the prompt's stats."""

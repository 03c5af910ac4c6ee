"""Autoscaling: one scaling policy per service, the evaluator, scaling events, what-if replays."""

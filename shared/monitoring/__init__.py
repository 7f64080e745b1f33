"""Monitoring: windows of a serving version measured against its baseline, decisions, and retraining."""

"""Evaluation of a checkpoint or a running node: offline, online, one metrics module."""

"""Kubernetes API subset and Spark Operator stand-in for the confidential clean room (see server.py)."""

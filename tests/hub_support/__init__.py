"""Helpers of tests/test_hub.py: local users, the hub's process, a browser per user, and
code run in a user's own server."""

"""Compliance: the credentials an organisation verified, what it requires of technicians, and its alerts."""

"""Webhooks (API.md, "Webhooks"): endpoints an organisation registers, the events recorded for them in the transaction
of each change (`events.emit`), and their signed, retried delivery by the queue (`delivery`)."""

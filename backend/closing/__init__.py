"""Closing the work (API.md): pay terms, tasks and attachments as proof of work, expenses, approval, payables."""

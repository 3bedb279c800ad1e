"""Job templates: an organisation's starting points for the jobs it posts again and again."""

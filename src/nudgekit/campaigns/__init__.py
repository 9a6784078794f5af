"""Campaigns: specs written as files (spec), when they run (schedule), plan on a dry copy (dry, code), the
checks before launch (preflight), launching a run (run), and what is live (live)."""

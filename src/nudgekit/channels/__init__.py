"""Channels: what a message on each channel looks like, what its carrier or platform accepts, and what it
costs — checked before any provider is called (docs/channels.md)."""

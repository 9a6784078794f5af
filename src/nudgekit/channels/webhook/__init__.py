"""Webhook: signed JSON POSTs to a customer URL, for anything our channels do not cover."""

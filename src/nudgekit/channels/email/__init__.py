"""Email: the message model and checks (message.py), and the SMTP provider (smtp.py)."""

"""App push: the message model and checks (message.py), FCM HTTP v1 (fcm.py) and APNs (apns.py)."""

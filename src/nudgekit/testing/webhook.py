"""A webhook receiver that checks signatures as a customer's endpoint should, and answers as scripted."""

from __future__ import annotations

import time
from collections import deque

from nudgekit.channels.webhook.message import SIGNATURE_HEADER, verify
from nudgekit.testing.http import Answer, FakeHttpServer, Request


class FakeWebhookReceiver(FakeHttpServer):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.script: deque[Answer] = deque()
        """Answers given in order, one per request; then 200."""
        self.verified: list[bool] = []

    def answer(self, request: Request) -> Answer:
        self.verified.append(verify(self.secret, request.body, request.headers.get(SIGNATURE_HEADER.lower(), ""),
                                    time.time()))
        if self.script:
            return self.script.popleft()
        return Answer(200, {"ok": True})

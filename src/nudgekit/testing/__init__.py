"""Fakes the tests share, shipped so you can try a configuration without reaching any real provider: real
servers on 127.0.0.1 (SMTP, HTTP) that answer as the providers document."""

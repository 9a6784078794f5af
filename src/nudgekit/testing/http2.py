"""A real HTTP/2 server over TLS on 127.0.0.1 in a thread, for fakes of providers that speak only HTTP/2
(APNs): TLS with ALPN "h2" and a certificate made for the run, whose authority `ca_file` names so clients
verify it as they would Apple's. Same shape as `FakeHttpServer`: a subclass answers each request in `answer`
(the same `Request` and `Answer`); every request is kept in `requests`. Streams are answered concurrently, so
a slow answer does not hold up the others on the connection."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nudgekit.testing.http import Answer, Request


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (it is its own authority)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nudgekit test server")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class FakeHttp2Server:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._folder = tempfile.TemporaryDirectory(prefix="nudge-h2-")
        cert_file, key_file = _certificate(Path(self._folder.name))
        self.ca_file = cert_file
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert_file, key_file)
        self._tls.set_alpn_protocols(["h2"])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    def answer(self, request: Request) -> Answer:
        return Answer(404, {"reason": "BadPath"})

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"https://{host}:{port}"

    def start(self) -> FakeHttp2Server:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls), self._loop)
        self._server = started.result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._connections):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._folder.cleanup()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                          header_encoding="utf-8"))
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        tasks: set[asyncio.Task[None]] = set()
        try:
            while data := await reader.read(65536):
                try:
                    events = connection.receive_data(data)
                except h2.exceptions.ProtocolError:
                    break
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = ({str(k): str(v) for k, v in event.headers}, bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        task = asyncio.create_task(self._respond(connection, writer, event.stream_id, headers,
                                                                 bytes(body)))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                writer.write(connection.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            self._connections.discard(writer)
            writer.close()

    async def _respond(self, connection: h2.connection.H2Connection, writer: asyncio.StreamWriter, stream_id: int,
                       headers: dict[str, str], body: bytes) -> None:
        request = Request(headers.get(":method", ""), headers.get(":path", ""),
                          {k: v for k, v in headers.items() if not k.startswith(":")}, body)
        self.requests.append(request)
        answer = self.answer(request)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        content = answer.body if isinstance(answer.body, bytes) else orjson.dumps(answer.body)
        response = [(":status", str(answer.status)), ("content-length", str(len(content)))]
        if not isinstance(answer.body, bytes):
            response.append(("content-type", "application/json"))
        response.extend((k.lower(), v) for k, v in (answer.headers or {}).items())
        try:
            connection.send_headers(stream_id, response, end_stream=not content)
            if content:
                connection.send_data(stream_id, content, end_stream=True)
            writer.write(connection.data_to_send())
            await writer.drain()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            pass

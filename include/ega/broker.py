"""The node's side of the AMQP broker (RabbitMQ), with pika: topology, publishing, draining.

CEGA's messages arrive in the ``files`` and ``stableIDs`` queues; this node publishes to the
topic exchange ``cega`` with routing keys ``files.verified``, ``files.completed``,
``files.error``. A message is acknowledged only after its handler returned (what it asked for
is recorded); a message that is not valid goes to the dead-letter queue with the reason, and is
then acknowledged: never lost, never requeued forever. The AMQP correlation id follows a file
from its trigger to its completion.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import pika
import pika.exceptions

from include.ega.errors import InvalidMessage, PermissionDenied, TransientError
from include.ega.messages import dead_letter_message

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)




def _refused(exc: BaseException) -> bool:
    """The broker refused who we are (ACCESS_REFUSED, a vhost we may not use): waiting does not help.
    pika also says "probable authentication error" for a connection merely cut during the
    handshake (a broker restarting), so the broker's own reply code must be in the message."""
    if isinstance(exc, pika.exceptions.AuthenticationError):
        return True
    probable = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError)
    return isinstance(exc, probable) and any(code in str(exc) for code in ("ACCESS_REFUSED", "NOT_ALLOWED"))


class DrainInterrupted(TransientError):
    """The broker went away while draining; ``results`` holds what was recorded before."""

    def __init__(self, message: str, results: list):
        super().__init__(message)
        self.results = results


@dataclass(frozen=True)
class BrokerSettings:
    host: str = "127.0.0.1"
    port: int = 5672
    user: str = "guest"
    password: str = "guest"  # noqa: S105 - RabbitMQ's default, only for the local stand-in
    vhost: str = "/"
    exchange: str = "cega"
    files_queue: str = "files"
    accession_queue: str = "stableIDs"
    dead_letter_queue: str = "dead_letters"
    ssl: bool = False

    def __repr__(self) -> str:  # never show the password
        return f"BrokerSettings(host={self.host!r}, port={self.port}, vhost={self.vhost!r}, user={self.user!r})"

    def url(self) -> str:
        """An amqp(s):// URL (holds the password: pass it to a client, never log it)."""
        scheme = "amqps" if self.ssl else "amqp"
        return (
            f"{scheme}://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/"
            f"{quote(self.vhost, safe='')}"
        )

    def parameters(self) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.user, self.password),
            heartbeat=60,
            blocked_connection_timeout=60,
            connection_attempts=3,
            retry_delay=1,
            ssl_options=pika.SSLOptions(__import__("ssl").create_default_context(), self.host) if self.ssl else None,
        )


def declare(channel, s: BrokerSettings) -> None:
    """Declare the exchange and queues (idempotent; CEGA's stand-in declares the same)."""
    channel.exchange_declare(exchange=s.exchange, exchange_type="topic", durable=True)
    for q in (s.files_queue, s.accession_queue, s.dead_letter_queue):
        channel.queue_declare(queue=q, durable=True)


class Broker:
    """A blocking connection with publisher confirms; reconnects on the next call after a drop."""

    def __init__(self, settings: BrokerSettings):
        self.settings = settings
        self._conn = None
        self._channel = None

    def channel(self):
        if self._channel is None or self._channel.is_closed or self._conn is None or self._conn.is_closed:
            self.close()
            try:
                self._conn = pika.BlockingConnection(self.settings.parameters())
                self._channel = self._conn.channel()
                self._channel.confirm_delivery()
                declare(self._channel, self.settings)
            except _CONNECTION_ERRORS as exc:
                self.close()
                if not _refused(exc):
                    raise TransientError(f"cannot reach the message broker: {type(exc).__name__}: {exc}") from exc
                raise PermissionDenied(
                    f"the message broker refused our credentials or vhost ({type(exc).__name__})",
                    hint="check the login, password and vhost (schema) of the lega_broker connection",
                ) from None
        return self._channel

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except _CONNECTION_ERRORS:
                pass

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        correlation_id: str | None,
        headers: dict | None = None,
    ) -> None:
        props = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            correlation_id=correlation_id or str(uuid.uuid4()),
            headers=headers,
        )
        for attempt in (1, 2):
            try:
                self.channel().basic_publish(
                    exchange=exchange, routing_key=routing_key, body=body, properties=props, mandatory=False
                )
                return
            except _CONNECTION_ERRORS as exc:
                self.close()
                if attempt == 2:
                    raise TransientError(f"cannot publish to the message broker: {exc}") from exc

    def publish(self, routing_key: str, message: dict, correlation_id: str | None) -> None:
        """Publish ``message`` (already validated) to CEGA's exchange, confirmed by the broker."""
        self._publish(self.settings.exchange, routing_key, json.dumps(message).encode(), correlation_id)
        log.info("published %s (correlation id %s)", routing_key, correlation_id)

    def dead_letter(self, body: bytes, reason: str, queue: str, correlation_id: str | None) -> None:
        record = dead_letter_message(body, reason, queue, correlation_id)
        self._publish(
            "",
            self.settings.dead_letter_queue,
            json.dumps(record).encode(),
            correlation_id,
            headers={"x-reason": reason[:200], "x-source-queue": queue},
        )
        log.warning("message from %s dead-lettered (correlation id %s): %s", queue, correlation_id, reason)

    def drain(
        self,
        queue: str,
        handler: Callable[[bytes, str | None], object],
        max_messages: int,
        on_invalid: Callable[[bytes, str, str | None], None] | None = None,
    ) -> list:
        """Take up to ``max_messages`` from ``queue``; ``handler(body, correlation_id)`` records each.

        The message is acknowledged after ``handler`` returned. ``InvalidMessage`` -> dead-letter
        queue (plus ``on_invalid``), then ack. ``TransientError`` -> the message is requeued and
        the error raised. Any other error is a bug: the message is dead-lettered with it, so that
        it is not redelivered forever, and the error is raised.
        """
        results: list = []
        try:
            self._drain(queue, handler, max_messages, on_invalid, results)
        except TransientError as exc:
            raise DrainInterrupted(str(exc), results) from exc
        return results

    def _drain(self, queue, handler, max_messages, on_invalid, results) -> None:
        channel = self.channel()
        for _ in range(max_messages):
            try:
                method, props, body = channel.basic_get(queue=queue, auto_ack=False)
            except _CONNECTION_ERRORS as exc:
                self.close()
                raise TransientError(f"lost the message broker while draining {queue}: {exc}") from exc
            if method is None:
                break
            correlation_id = props.correlation_id
            try:
                results.append(handler(body, correlation_id))
            except InvalidMessage as exc:
                if on_invalid:
                    on_invalid(body, exc.reason, correlation_id)
                self.dead_letter(body, exc.reason, queue, correlation_id)
            except TransientError:
                self._nack(channel, method.delivery_tag)
                raise
            except Exception as exc:
                self.dead_letter(body, f"internal error: {type(exc).__name__}: {exc}", queue, correlation_id)
                self._ack(channel, method.delivery_tag)
                raise
            self._ack(channel, method.delivery_tag)

    def _ack(self, channel, tag) -> None:
        try:
            channel.basic_ack(tag)
        except _CONNECTION_ERRORS as exc:
            # the broker redelivers the message; recording it again changes nothing (idempotent)
            self.close()
            raise TransientError(f"lost the message broker before an ack: {exc}") from exc

    def _nack(self, channel, tag) -> None:
        try:
            channel.basic_nack(tag, requeue=True)
        except _CONNECTION_ERRORS:
            self.close()

"""DNS providers for ACME DNS-01: publish and remove the `_acme-challenge` TXT record.

A provider implements `DnsProvider` (two async methods). pilothouse ships an RFC 2136 dynamic
update provider (dnspython's `dns.update`), optionally signed with TSIG, which works with BIND,
Knot, PowerDNS, Windows DNS and most self-hosted servers. Other providers (cloud DNS APIs) plug
in by implementing the protocol and registering in PROVIDERS.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import dns.asyncquery
import dns.exception
import dns.name
import dns.rcode
import dns.tsigkeyring
import dns.update


class DnsProviderError(Exception):
    pass


class DnsProvider(Protocol):
    async def publish(self, name: str, value: str) -> None: ...

    async def remove(self, name: str, value: str) -> None: ...


class Rfc2136:
    """RFC 2136 dynamic updates to one server (`host:port`) for `zone`, TSIG optional."""

    def __init__(
        self,
        server: str,
        zone: str,
        *,
        tsig_name: str | None = None,
        tsig_secret: str | None = None,
        tsig_algorithm: str = "hmac-sha256",
        ttl: int = 60,
        timeout: float = 5.0,
    ) -> None:
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        self.host, self.port = host, int(port) if port else 53
        self.zone = dns.name.from_text(zone)
        self.keyring = (
            dns.tsigkeyring.from_text({tsig_name: tsig_secret})
            if tsig_name and tsig_secret
            else None
        )
        self.algorithm = tsig_algorithm
        self.ttl = ttl
        self.timeout = timeout

    def _update(self) -> dns.update.UpdateMessage:
        if self.keyring is None:
            return dns.update.UpdateMessage(self.zone)
        return dns.update.UpdateMessage(
            self.zone, keyring=self.keyring, keyalgorithm=self.algorithm
        )

    async def _send(self, update: dns.update.UpdateMessage) -> None:
        try:
            answer = await dns.asyncquery.tcp(
                update, self.host, port=self.port, timeout=self.timeout
            )
        except (OSError, TimeoutError, dns.exception.DNSException) as exc:
            raise DnsProviderError(f"RFC 2136 update failed: {type(exc).__name__}") from None
        if answer.rcode() != dns.rcode.NOERROR:
            raise DnsProviderError(f"RFC 2136 update refused: {dns.rcode.to_text(answer.rcode())}")

    def _relative(self, name: str) -> dns.name.Name:
        return dns.name.from_text(name).relativize(self.zone)

    async def publish(self, name: str, value: str) -> None:
        update = self._update()
        update.add(self._relative(name), self.ttl, "TXT", f'"{value}"')
        await self._send(update)

    async def remove(self, name: str, value: str) -> None:
        update = self._update()
        update.delete(self._relative(name), "TXT", f'"{value}"')
        await self._send(update)


async def wait(seconds: float) -> None:
    """Pause for propagation (tests set 0)."""
    if seconds > 0:
        await asyncio.sleep(seconds)

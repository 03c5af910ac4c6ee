"""The certificates capability's background work (registered in worker.CAPABILITIES).

- `certs.check` (every 60 s, once per slot across workers): handshakes with the tracked
  endpoints not checked for PILOTHOUSE_CERTS_CHECK_MINUTES, then sends the expiry alerts
  (30/14/7/3/1 days by default, per certificate) and failure alerts due, each once
  (claimed in job_slots, certificates/service.py);
- `domains.verify` (every 30 s, once per slot across workers): resolves the domains whose
  next check is due (pending and configured ones with backoff, verified ones daily) and
  moves them along the seed's state machine (certificates/domains.py);
- `certs.renew` (every 5 min, once per slot across workers): renews the ACME certificates
  within PILOTHOUSE_ACME_RENEW_BEFORE_DAYS of expiry (per certificate), with backoff after a
  failure (1 min doubling to 6 h); a failure alerts once (certificates/issue.py);
- `certs.serve` (every 30 s, every worker: each host has its router): writes the verified
  domains' active certificates for nginx and reloads it gracefully when they changed
  (certificates/router.py).
Off when PILOTHOUSE_CERTS_ENABLED is false.
"""

from __future__ import annotations

from datetime import datetime

from pilothouse.alerts.service import notify
from pilothouse.certificates import domains, issue, service
from pilothouse.certificates import router as tls_router
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import CryptoError, Keyring, load_keyring
from pilothouse.core.logging import get_logger
from pilothouse.core.loops import Loop, Runtime
from pilothouse.drivers.nginx import NginxRouter, RouterError

log = get_logger("pilothouse.worker")

CHECK_EVERY = 60.0
VERIFY_EVERY = 30.0
RENEW_EVERY = 300.0
SERVE_EVERY = 30.0


class CertLoops:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.router = NginxRouter(rt.data_dir / "nginx")

    def keyring(self) -> Keyring | None:
        """This process's keyring (channels' sealed settings); None when there is none
        (channels without sealed settings still get the alert)."""
        try:
            return load_keyring(self.rt.settings.master_key, self.rt.settings.master_key_path)
        except CryptoError:
            return None

    async def check(self, now: datetime | None = None) -> int:
        """Check what is due, then send the alerts due; how many alerts."""
        now = now or utcnow()
        settings = self.rt.settings
        await service.check_due(
            self.rt.db, now, settings.certs_check_minutes, ca_file=settings.certs_ca_file
        )
        notices = await service.alerts_due(self.rt.db, self.rt.leases, now)
        for notice in notices:
            log.warning(
                "certificate alert", alert=notice.message["event"], id=str(notice.certificate_id)
            )
            try:
                await notify(self.rt.db, notice.message, keyring=self.keyring())
            except Exception as exc:  # the claim is spent: logged, like every other alert
                log.error("certificate alert failed", exc_info=exc)
        return len(notices)

    async def renew(self, now: datetime | None = None) -> int:
        """Renew the ACME certificates inside their window (backoff after failures); how
        many were attempted. Failures alert through `certs.check` (once per certificate)."""
        keyring = self.keyring()
        if keyring is None:
            return 0  # no master key: nothing can be sealed, so nothing is issued
        config = issue.config_from(self.rt.settings)
        return len(await issue.renew_due(self.rt.db, keyring, config, now or utcnow()))

    async def serve(self) -> int:
        """Serve the verified domains' active certificates at this host's router (only when
        the router runs: a host without routed services has nothing to serve)."""
        keyring = self.keyring()
        if keyring is None or self.router.pid() is None:
            return 0
        try:
            return await tls_router.sync(
                self.rt.db, keyring, self.router, tls_router.tls_settings(self.rt.settings)
            )
        except RouterError as exc:
            log.error("router TLS sites not applied", reason=str(exc)[:300])
            return 0

    async def verify(self, now: datetime | None = None) -> int:
        settings = self.rt.settings
        found = await domains.verify_due(
            self.rt.db,
            now or utcnow(),
            domains.Resolver.from_setting(settings.dns_resolver),
            recheck_hours=settings.domain_recheck_hours,
            max_attempts=settings.domain_max_attempts,
        )
        for domain, before, after in found:
            if before == "verified" and after != "verified":
                message = domains.lost_message(domain)
                log.warning("domain stopped pointing to us", domain=domain.domain_name)
                try:
                    await notify(self.rt.db, message, keyring=self.keyring())
                except Exception as exc:
                    log.error("domain alert failed", exc_info=exc)
        return len(found)


def loops(rt: Runtime) -> list[Loop]:
    if not rt.settings.certs_enabled:
        return []
    certs = CertLoops(rt)
    return [
        Loop("certs.check", certs.check, CHECK_EVERY, once=True),
        Loop("domains.verify", certs.verify, VERIFY_EVERY, once=True),
        Loop("certs.renew", certs.renew, RENEW_EVERY, once=True),
        Loop("certs.serve", certs.serve, SERVE_EVERY),
    ]

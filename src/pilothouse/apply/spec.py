"""The `pilothouse.yaml` document: one Pydantic model per section, the JSON Schema's source.

Layout (every map is keyed by the object's name, so a name cannot appear twice):

    version: 1
    environments:
      <env>:            type, domain, driver, config, features, limits
        requirements:   <VARIABLE>: {required, rule, args}
        services:       <service>: image, command, target_replicas, resources, public_url,
                                   driver_config (router...), health_check, scaling
        backups:        <target>: dsn (a reference to a secret variable), schedule, storage...
        alert_rules:    <rule>: service, metric, expression, window, warning, critical...
        domains:        <domain name>: service, root, cdn_enabled (names unique across
                                   environments)
    channels:           <channel>: kind, config (no credentials), secrets (references)...

Secrets are never written in the file: a backup target's `dsn` and a channel's credentials are
references `{variable: KEY, environment: ENV}` to environment variables (set with `pilothouse vars
set`), resolved on the server when the plan is made. A service's `scaling` is autoscaling's own
PolicySet (same fields, ranges and cross-field rules, checked by autoscaling's code). A domain
is registered for one of its environment's services (docs/certificates.md); it cannot change in
place: delete it (--prune) and declare it anew.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pilothouse.alerts.schemas import DeployEvent
from pilothouse.autoscaling.schemas import DEFAULTS as SCALING_DEFAULTS
from pilothouse.autoscaling.schemas import PolicySet
from pilothouse.backups.schemas import Cron, Retention, StorageConfig
from pilothouse.environments.schemas import Driver, EnvironmentConfig, EnvType, Features, Limits
from pilothouse.healthchecks.spec import HealthCheckSpec
from pilothouse.metrics.schemas import Expression, MetricName, Tags
from pilothouse.services.schemas import HealthCheck, Image, Replicas, Resources, Settings
from pilothouse.variables.schemas import RequirementSet, VarKey

VERSION = 1
Key = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(Strict):
    """Where a secret comes from: an environment variable of an environment (never inline)."""

    variable: VarKey = Field(description="Variable key, set with `pilothouse vars set`.")
    environment: Key | None = Field(
        default=None,
        description="Environment holding the variable (default: the one the object sits in).",
    )


def _scaling_schema(schema: dict[str, Any]) -> None:
    """Show each field's real default (a field left out takes it) instead of PolicySet's null
    ("keep the current value"), and null only where it means something (metric_target)."""
    for name, prop in schema.get("properties", {}).items():
        if name not in SCALING_DEFAULTS:
            continue
        prop["default"] = SCALING_DEFAULTS[name]
        options = prop.get("anyOf")
        if name != "metric_target" and isinstance(options, list):
            kept = [o for o in options if o != {"type": "null"}]
            if len(kept) == 1:
                del prop["anyOf"]
                prop.update(kept[0])


class ScalingSpec(PolicySet):
    """A service's scaling policy (docs/autoscaling.md): autoscaling's fields, ranges and rules;
    a field left out takes its default."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_scaling_schema)


class ServiceSpec(Strict):
    """A service: what runs, how many, with what resources, probed how, routed how."""

    image: Image | None = Field(default=None, description="Container image.")
    command: str | None = Field(
        default=None,
        max_length=4000,
        description="Command that starts one replica ({port} and {version} substituted).",
    )
    target_replicas: Replicas = Field(default=1, description="Desired replicas, 1-100.")
    resources: Resources = Field(default_factory=Resources, description="Resource allocation.")
    public_url: str | None = Field(default=None, max_length=500, description="Public URL.")
    driver_config: Settings = Field(
        default_factory=dict,
        description="Driver settings (router, router_port, rollout tuning...), validated by the "
        "environment's driver (docs/releases.md).",
    )
    health_check: HealthCheck = Field(
        default_factory=HealthCheckSpec,
        description="Readiness and health monitoring settings (docs/health.md).",
    )
    scaling: ScalingSpec | None = Field(
        default=None,
        description="The autoscaling policy (docs/autoscaling.md); `{}` for all defaults. "
        "While it is enabled the autoscaler owns the replica count: `target_replicas` is only "
        "the count a new service starts with, and is not compared. Left out: the live policy "
        "is kept (deleted with --prune).",
    )


class BackupSpec(Strict):
    """A database backed up on a schedule; its DSN comes from a secret variable."""

    dsn: SecretRef = Field(description="The variable holding the database URL.")
    schedule: Cron = Field(
        default="0 2 * * *",
        description="Cron (UTC); null for none. In a development environment the default is "
        "none, and a schedule needs `force`.",
    )
    drill_schedule: Cron = Field(default="0 4 * * L0", description="Cron (UTC) for drills.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Storage.")
    retention: Retention = Field(default=None, description="Days kept per class.")
    max_retries: int = Field(default=3, ge=0, le=10, description="Retries of a failed backup.")
    retry_delay_seconds: int = Field(default=300, ge=1, le=86400, description="Between retries.")
    before_deploy: bool = Field(default=False, description="Back up before each deployment.")
    enabled: bool = Field(default=True, description="Whether schedules run.")
    content_checksums: bool = Field(default=True, description="Per-table content checksums.")
    force: bool = Field(default=False, description="Allow a schedule in development.")


class AlertRuleSpec(Strict):
    """An alert rule on a metric of the environment (or of one of its services)."""

    service: Key | None = Field(default=None, description="Service watched (in this environment).")
    metric: MetricName = Field(description="Metric name.")
    tags: Tags = Field(default_factory=dict, description="Only series with these tags.")
    expression: Expression = Field(description="Statistic over the window.")
    per_metric: MetricName | None = Field(default=None, description="Ratio denominator.")
    window: str = Field(default="5m", pattern=r"^[1-9][0-9]*[smhd]$", description="e.g. 5m.")
    comparator: Literal[">", "<"] = Field(default=">", description="Breach when > or <.")
    warning: float | None = Field(default=None, description="Warning level.")
    critical: float | None = Field(default=None, description="Critical level.")
    for_m: int = Field(default=1, ge=1, le=100, description="Fire when M of the last N breach.")
    for_n: int = Field(default=1, ge=1, le=100, description="N evaluations considered.")
    recover_n: int = Field(default=1, ge=1, le=100, description="Clear evaluations to recover.")


DomainName = Annotated[str, Field(min_length=1, max_length=253)]


class DomainSpec(Strict):
    """A custom domain routed to a service of the environment (docs/certificates.md)."""

    service: Key = Field(description="Service it routes to (in this environment).")
    root: str | None = Field(
        default=None,
        max_length=253,
        description="Registrable root domain (default: the last two labels of the name).",
    )
    cdn_enabled: bool = Field(default=False, description="Served through a CDN.")


class EnvironmentSpec(Strict):
    """An environment and everything that lives in it."""

    type: EnvType = Field(default="development", description="development, staging, production.")
    domain: str | None = Field(default=None, max_length=253, description="Base domain.")
    driver: Driver = Field(default="process", description="Deployment driver.")
    config: EnvironmentConfig = Field(
        default_factory=EnvironmentConfig,
        description="Settings (database_url, redis_url, dependency_interval; other keys kept).",
    )
    features: Features = Field(default_factory=dict, description="Feature flags.")
    limits: Limits = Field(default_factory=Limits, description="Operational limits.")
    is_active: bool = Field(default=True, description="Inactive environments refuse work.")
    requirements: dict[VarKey, RequirementSet] = Field(
        default_factory=dict, description="Variables deployments need, and their format."
    )
    services: dict[Key, ServiceSpec] = Field(default_factory=dict, description="Services.")
    backups: dict[Key, BackupSpec] = Field(
        default_factory=dict, description="Backup targets (names unique across environments)."
    )
    alert_rules: dict[Annotated[str, Field(min_length=1, max_length=100)], AlertRuleSpec] = Field(
        default_factory=dict, description="Metric alert rules."
    )
    domains: dict[DomainName, DomainSpec] = Field(
        default_factory=dict,
        description="Custom domains, by name (unique across environments); a change to one is "
        "refused: delete it (--prune) and declare it anew.",
    )


class ChannelSpec(Strict):
    """A notification channel; its credentials (url, secret, password) are references."""

    kind: Literal["webhook", "slack", "email"] = Field(description="webhook, slack or email.")
    environment: Key | None = Field(
        default=None, description="Environment whose granted users may see it."
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings without credentials (email: host, port, from, to, starttls, "
        "username).",
    )
    secrets: dict[Literal["url", "secret", "password"], SecretRef] = Field(
        default_factory=dict,
        description="Credentials, each from a variable: webhook url and secret, slack url, email "
        "password.",
    )
    is_active: bool = Field(default=True, description="Whether it receives alerts.")
    deploy_events: list[DeployEvent] = Field(
        default_factory=list, max_length=4, description="Deployment events it receives."
    )
    deploy_environments: list[Key] = Field(
        default_factory=list, max_length=100, description="Environments whose events it gets."
    )


class Document(Strict):
    """A whole pilothouse.yaml."""

    model_config = ConfigDict(extra="forbid", title="pilothouse.yaml")

    version: Literal[1] = Field(default=1, description="File format version (1).")
    environments: dict[Key, EnvironmentSpec] = Field(
        default_factory=dict, description="Environments, by name."
    )
    channels: dict[Key, ChannelSpec] = Field(
        default_factory=dict, description="Notification channels, by name."
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of pilothouse.yaml (editors: `# yaml-language-server: $schema=...`)."""
    schema = Document.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

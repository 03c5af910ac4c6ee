"""Imports every feature's models so Base.metadata (and Alembic) sees all tables."""

from pilothouse.alerts.models import NotificationChannel
from pilothouse.artifacts.models import Artifact
from pilothouse.audit.models import AuditEntry
from pilothouse.autoscaling.models import ScalingCohort, ScalingEvent, ScalingPolicy
from pilothouse.backups.models import Backup, BackupTarget
from pilothouse.certificates.models import AcmeAccount, AcmeChallenge, Certificate, Domain
from pilothouse.core.db import Base
from pilothouse.core.leases import JobSlot
from pilothouse.deployments.models import Deployment, DeploymentLog, DeploymentPin
from pilothouse.environments.models import Environment, EnvironmentGrant
from pilothouse.findings.models import (
    GateOverride,
    ScanSchedule,
    SecurityFinding,
    SecurityScan,
)
from pilothouse.healthchecks.models import (
    Downtime,
    HealthCheck,
    HealthRollup,
    HealthState,
    Incident,
    MaintenanceWindow,
    ProbeClaim,
)
from pilothouse.history.models import StatusHistory
from pilothouse.hooks.models import DeployHook, HookDelivery
from pilothouse.metrics.figures import ReplicaFigures
from pilothouse.metrics.models import (
    MetricAlertRule,
    MetricIncident,
    MetricRollup,
    MetricRollupProgress,
    MetricSeries,
)
from pilothouse.replicas.models import Node, Replica
from pilothouse.services.models import Service
from pilothouse.users.models import ApiToken, User
from pilothouse.variables.models import EnvVar, EnvVarVersion, VarRequirement
from pilothouse.web.models import PublicStatus, WebSession

__all__ = [
    "AcmeAccount",
    "AcmeChallenge",
    "ApiToken",
    "Artifact",
    "AuditEntry",
    "Backup",
    "BackupTarget",
    "Base",
    "Certificate",
    "DeployHook",
    "Deployment",
    "DeploymentLog",
    "DeploymentPin",
    "Domain",
    "Downtime",
    "EnvVar",
    "EnvVarVersion",
    "Environment",
    "EnvironmentGrant",
    "GateOverride",
    "HealthCheck",
    "HealthRollup",
    "HealthState",
    "HookDelivery",
    "Incident",
    "JobSlot",
    "MaintenanceWindow",
    "MetricAlertRule",
    "MetricIncident",
    "MetricRollup",
    "MetricRollupProgress",
    "MetricSeries",
    "Node",
    "NotificationChannel",
    "ProbeClaim",
    "PublicStatus",
    "Replica",
    "ReplicaFigures",
    "ScalingCohort",
    "ScalingEvent",
    "ScalingPolicy",
    "ScanSchedule",
    "SecurityFinding",
    "SecurityScan",
    "Service",
    "StatusHistory",
    "User",
    "VarRequirement",
    "WebSession",
]

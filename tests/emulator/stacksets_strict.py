"""CloudFormation StackSets as AWS runs them, where moto 5.2.5 is kinder.

moto runs every stack-set operation to SUCCEEDED inside the request that starts it, needs no
IAM role anywhere, never refuses a second operation, deploys service-managed stack sets
without trusted access (and to the management account, and one unit level deep only), leaves
the stacks of the instances untouched by UpdateStackSet, and never sees a stack deleted
behind its back. Here, for an organization that opted in, the emulator behaves as the AWS
CloudFormation API reference (APIReference/API_*.html) and the StackSets chapters of the
CloudFormation User Guide say. Each rule cites its source.

ON by default (tests and demo run against AWS's behaviour). To get moto's back:

- per organization: X-Amz-Target ``EstateEmulator.Configure`` with
  ``{"ManagementAccount": id, "StrictStackSets": false}`` (stored as 0.0 in
  ``organizations_strict.SETTINGS``);
- for every organization: ``ESTATE_EMULATOR_STRICT_STACKSETS=0`` in the emulator's
  environment.

Timings (per organization through Configure, defaults from the environment):

- ``OperationPolls`` (``ESTATE_EMULATOR_OPERATION_POLLS``, default 2) and ``OperationSeconds``
  (``ESTATE_EMULATOR_OPERATION_SECONDS``, default 0.3): see rule 3.

Rules:

1. Self-managed permissions need two IAM roles (User Guide, "Grant self-managed
   permissions"): the administration role in the administrator account
   (``AdministrationRoleARN``, default ``arn:aws:iam::<admin>:role/
   AWSCloudFormationStackSetAdministrationRole``) trusting the CloudFormation service, and in
   every target account the execution role (``ExecutionRoleName``, default
   ``AWSCloudFormationStackSetExecutionRole``) trusting the administrator account (its root,
   or the administration role). AWS does *not* refuse CreateStackSet, CreateStackInstances,
   UpdateStackSet, UpdateStackInstances or DeleteStackInstances when they are missing: it
   accepts the call and the *operation* fails for the instance. The API reference's example
   of ListStackSetOperationResults shows it: the result for the instance is ``FAILED`` with
   StatusReason (and an AccountGateResult ``FAILED`` with the same reason) "Account <admin
   account> should have 'AWSCloudFormationStackSetAdministrationRole' role with trust
   relationship to CloudFormation service.", and the instance after it ``CANCELLED`` with
   "Cancelled since failure tolerance has exceeded". A missing or untrusting execution role
   fails the instance with "Account <target> should have '<execution role>' role with trust
   relationship to Role '<administration role name>'." (the text AWS returns; the terraform
   and pulumi providers match it to retry on IAM propagation). The instance is left
   ``OUTDATED`` with that StatusReason (API reference, StackInstance.Status: OUTDATED "the
   associated stack failed during a CreateStackSet or UpdateStackSet operation, or the stack
   was part of [an operation] that failed or was stopped before the stack was created or
   updated"), with no StackId while no stack exists ("A stack instance can exist without a
   stack"). A DeleteStackInstances that fails leaves the instance ``INOPERABLE``
   (StackInstance.Status: "A DeleteStackInstances operation has failed and left the stack
   in an unstable state. Stacks in this state are excluded from further UpdateStackSet
   operations"); with RetainStacks the execution role is not needed (the stack is not
   touched). Failure tolerance as StackSetOperationPreferences says: FailureToleranceCount
   or FailureTolerancePercentage (rounded down) "per Region" (default 0), MaxConcurrentCount
   or MaxConcurrentPercentage (default 1); once a Region exceeds its tolerance the rest of
   it is CANCELLED and, unless RegionConcurrencyType is PARALLEL, so are the Regions after
   it (RegionOrder first); the operation is then FAILED, else SUCCEEDED even with failures
   inside the tolerance (StackSetOperationResultSummary.Status). The administration role's
   own permission policy is not checked.
2. Service-managed permissions need trusted access with Organizations (User Guide,
   "Activate trusted access for StackSets with AWS Organizations"): without it
   CreateStackSet, and any later operation, is refused with ValidationError "You must enable
   organizations access to operate a service managed stack set" (the text AWS returns).
   Trusted access is on after CloudFormation ActivateOrganizationsAccess (served here, with
   DescribeOrganizationsAccess and DeactivateOrganizationsAccess, which moto lacks; it
   enables the service principal ``member.org.stacksets.cloudformation.amazonaws.com`` in
   Organizations) or after Organizations EnableAWSServiceAccess for that principal. NOTE:
   field reports say that on AWS the Organizations call alone is not enough; the emulator
   accepts either. Only the management account may operate them: else ValidationError "You
   must be the master or delegated admin account of an organization before operating a
   SERVICE_MANAGED stack set" (delegated administrators are not modelled).
   CreateStackInstances takes DeploymentTargets.OrganizationalUnitIds; Accounts alone are
   refused with ValidationError "StackSets with SERVICE_MANAGED permission model can only
   have OrganizationalUnit as target" (the text AWS returns). DeploymentTargets.Accounts
   with units needs an AccountFilterType (API reference, DeploymentTargets: "When performing
   create operations, if you specify both OrganizationalUnitIds and Accounts, you must also
   specify the AccountFilterType property"; UNION "is not supported for CreateStackInstances
   operations"; these two messages are the emulator's). Instances go to every ACTIVE account
   in the units and in the units below them, never to the management account
   (DeploymentTargets: "CloudFormation doesn't deploy stack instances to the organization
   management account, even if the organization management account is in your organization
   or in an OU in your organization"); each carries its OrganizationalUnitId. The stack is
   a real stack in the member account, as on AWS (moto hides it). AutoDeployment
   (API reference, AutoDeployment) is kept and returned by DescribeStackSet; when enabled, an
   account moved (MoveAccount) into a targeted unit gets instances in the set's Regions, and
   one moved out loses them (its stacks kept if RetainStacksOnAccountRemoval), through
   operations like any other (started even while another runs: AWS queues them). An account
   created straight into a targeted root is not auto-deployed to. AdministrationRoleARN and
   ExecutionRoleName are not reported for service-managed stack sets (moto invents them).
3. Operations take time (API reference, DescribeStackSetOperation; StackSetOperation.Status
   RUNNING): an operation stays RUNNING for ``OperationPolls`` DescribeStackSetOperation calls
   and at least ``OperationSeconds``; it completes whether anyone polls after ten times that
   delay (at least 3 s), as AWS works in the background. Meanwhile a further
   CreateStackInstances, UpdateStackInstances, DeleteStackInstances, UpdateStackSet,
   DetectStackSetDrift or DeleteStackSet on the same stack set is refused with
   OperationInProgressException "Another operation is currently in progress for this stack
   set. Only one operation can be performed for a stack set at a given time." (API
   reference, Errors of each). An OperationId already used on the stack set is refused with
   OperationIdAlreadyExistsException "The specified operation ID already exists."
   CreateStackSet of a name in use: NameAlreadyExistsException "The specified name is already
   in use." Stacks are created, updated and deleted when the operation completes; until then
   the instances concerned are OUTDATED with DetailedStatus PENDING
   (StackInstanceComprehensiveStatus), new ones without StackId. StopStackSetOperation stops a
   RUNNING operation at once (STOPPED, its instances CANCELLED and OUTDATED); on any other,
   InvalidOperationException.
4. UpdateStackSet updates the stacks it targets with the new template and parameters (each
   instance's overrides applied); with no Accounts, Regions or DeploymentTargets it targets
   every instance (INOPERABLE ones excepted). API reference, UpdateStackSet, Accounts: "If the
   stack set update includes changes to the template (that is, if the TemplateBody or
   TemplateURL properties are specified), or the Parameters property, CloudFormation marks
   all stack instances with a status of OUTDATED prior to updating the stack instances in
   the specified accounts and AWS Regions. If the stack set update does not include changes
   to the template or parameters, CloudFormation updates the stack instances in the
   specified accounts and AWS Regions, while leaving all other stack instances with their
   existing stack instance status." The stack set itself changes at once ("Even if the stack
   set operation created by updating the stack set fails [...], the stack set is updated
   with your changes"). Targeted instances that do not exist:
   StackInstanceNotFoundException. UpdateStackInstances updates the overrides (the list given
   replaces them; "UsePreviousValue" keeps one) and the stacks.
5. Drift (API reference, DetectStackSetDrift, ListStackInstanceResourceDrifts;
   StackInstanceSummary.DriftStatus: "A stack instance is considered to have drifted if one
   or more of the resources in the associated stack have drifted"; StackResourceDriftStatus
   DELETED: "The resource differs from its expected template configuration in that the
   resource has been deleted"): detection is an operation like the others. An instance whose
   stack was deleted in its account (by DeleteStack there, or the test hook
   ``EstateEmulator.DeleteStackInMember``) is found DRIFTED, each resource of its template
   DELETED; the others IN_SYNC (moto cannot change a resource behind CloudFormation's back).
   The docs do not say what AWS reports when the whole stack is gone; this is the model the
   project asked for. An instance without a stack, or whose execution role is missing, is a
   FAILED result of the detection and keeps its drift status. DescribeStackSet then carries
   StackSetDriftDetectionDetails. Every operation sets its instances' LastOperationId
   (StackInstanceSummary: "The last unique ID of a StackSet operation performed on a stack
   instance"), so a reader can tell whether a drift result is still the latest word.

Test hook: X-Amz-Target ``EstateEmulator.DeleteStackInMember`` with
``{"ManagementAccount", "StackSetName", "Account", "Region"}`` (optional
``"StackSetRegion"``): deletes the stack of that instance in the member account, as someone
working in that account could; answers ``{"StackId": ...}``.
6. A create retried with its ClientRequestToken is the same request: CreateStackSet or
   CreateStack of a name in use, with the token of the request that made it, answers as that
   request did (its StackSetId or StackId), not NameAlreadyExistsException or
   AlreadyExistsException (API reference, CreateStackSet and CreateStack, ClientRequestToken:
   "Specify this token if you plan to retry requests so that CloudFormation knows that you're
   not attempting to create [another stack set | a stack] with the same name. You might retry
   ... requests to ensure that CloudFormation successfully received them."). moto ignores the
   token. (OperationId plays this part for the operations: rule 3.)
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.parse
import uuid
from typing import Any, Callable, Iterable

from moto.core.exceptions import ServiceException

import organizations_strict

LOCK = threading.RLock()

ORG_SERVICE = "member.org.stacksets.cloudformation.amazonaws.com"
ADMIN_ROLE = "AWSCloudFormationStackSetAdministrationRole"
EXECUTION_ROLE = "AWSCloudFormationStackSetExecutionRole"
CANCELLED_REASON = "Cancelled since failure tolerance has exceeded"
STOPPED_REASON = "Cancelled since the operation was stopped"
IN_PROGRESS = (
    "Another operation is currently in progress for this stack set. Only one operation can "
    "be performed for a stack set at a given time."
)
NO_TRUSTED_ACCESS = "You must enable organizations access to operate a service managed stack set"
NOT_ADMIN = (
    "You must be the master or delegated admin account of an organization before operating "
    "a SERVICE_MANAGED stack set"
)
ONLY_UNITS = "StackSets with SERVICE_MANAGED permission model can only have OrganizationalUnit as target"


def _number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


OPERATION_SECONDS = _number("ESTATE_EMULATOR_OPERATION_SECONDS", 0.3)
OPERATION_POLLS = _number("ESTATE_EMULATOR_OPERATION_POLLS", 2)


class Refused(ServiceException):
    """An error answer; `code` is the error's shape name in the CloudFormation model."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


# ------------------------------------------------------------------------ settings


def management_of(account: str) -> str | None:
    """The management account of the organization `account` belongs to, if any."""
    from moto.organizations.models import organizations_backends

    found = organizations_backends.master_accounts.get(account)
    if found is not None:
        return found[0]
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        if account in organizations_backends and partition in organizations_backends[account]:
            org = organizations_backends[account][partition].org
            if org is not None and org.master_account_id == account:
                return account
    return None


def organization(account: str) -> Any:
    """moto's Organizations backend of the organization `account` belongs to, if any."""
    from moto.organizations.models import organizations_backends

    management = management_of(account)
    if management is None:
        return None
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        if partition in organizations_backends[management]:
            backend = organizations_backends[management][partition]
            if backend.org is not None:
                return backend
    return None


def setting(account: str, name: str, default: float) -> float:
    management = management_of(account) or account
    return float(organizations_strict.SETTINGS.get(management, {}).get(name, default))


def enabled(account: str) -> bool:
    """On by default, as AWS is; ESTATE_EMULATOR_STRICT_STACKSETS=0 (or Configure
    StrictStackSets false for one organization) gives moto's lenient behaviour back."""
    default = 0.0 if os.environ.get("ESTATE_EMULATOR_STRICT_STACKSETS", "1") == "0" else 1.0
    return setting(account, "StrictStackSets", default) != 0.0


def trusted_access(org: Any) -> bool:
    return org is not None and any(s.get("ServicePrincipal") == ORG_SERVICE for s in org.services)


# --------------------------------------------------------------------------- roles


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            try:
                document = json.loads(urllib.parse.unquote(document))
            except ValueError:
                return []
    if not isinstance(document, dict):
        return []
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _trusts(role: Any, principal_type: str, wanted: Callable[[str], bool]) -> bool:
    """Whether the role's trust policy lets a principal `wanted` accepts call sts:AssumeRole."""
    for s in _statements(getattr(role, "assume_role_policy_document", None)):
        if s.get("Effect") != "Allow":
            continue
        actions = [str(a).lower() for a in _as_list(s.get("Action", []))]
        if not any(a in ("sts:assumerole", "sts:*", "*") for a in actions):
            continue
        principal = s.get("Principal")
        if principal == "*":
            return True
        if isinstance(principal, dict):
            if any(p == "*" or wanted(str(p)) for p in _as_list(principal.get(principal_type, []))):
                return True
    return False


def _role(account: str, name: str) -> Any:
    from moto.iam.models import iam_backends

    try:
        return iam_backends[account]["global"].get_role(name)
    except Exception:  # moto raises IAMNotFoundException
        return None


def _admin_role(stack_set: Any) -> tuple[str, str, str]:
    """(account, role name, ARN) of a stack set's administration role."""
    arn = stack_set.administration_role_arn or (
        f"arn:aws:iam::{stack_set.estate_admin_account}:role/{ADMIN_ROLE}"
    )
    parts = arn.split(":", 5)
    account = parts[4] if len(parts) > 5 else stack_set.estate_admin_account
    name = parts[5].split("/")[-1] if len(parts) > 5 else ADMIN_ROLE
    return account, name, arn


def admin_problem(stack_set: Any) -> str | None:
    """Why the administration role cannot be used, if it cannot (self-managed only)."""
    if stack_set.permission_model != "SELF_MANAGED":
        return None
    account, name, _ = _admin_role(stack_set)
    role = _role(account, name)
    if role is None or not _trusts(
        role, "Service", lambda p: p.startswith("cloudformation.") and p.endswith(".amazonaws.com")
    ):
        return (
            f"Account {account} should have '{name}' role with trust relationship to "
            "CloudFormation service."
        )
    return None


def execution_problem(stack_set: Any, account: str) -> str | None:
    """Why the execution role in `account` cannot be assumed, if it cannot (self-managed)."""
    if stack_set.permission_model != "SELF_MANAGED":
        return None
    admin_account, admin_name, admin_arn = _admin_role(stack_set)
    name = stack_set.execution_role_name or EXECUTION_ROLE
    role = _role(account, name)
    trusted = {admin_account, f"arn:aws:iam::{admin_account}:root", admin_arn}
    if role is None or not _trusts(role, "AWS", lambda p: p in trusted):
        return (
            f"Account {account} should have '{name}' role with trust relationship to Role "
            f"'{admin_name}'."
        )
    return None


# ----------------------------------------------------------------------- instances


def _as_dict(parameters: Any) -> dict[str, str]:
    if isinstance(parameters, dict):
        return {str(k): str(v) for k, v in parameters.items()}
    return {
        p["ParameterKey"]: p.get("ParameterValue", "")
        for p in parameters or []
        if isinstance(p, dict) and "ParameterKey" in p and "ParameterValue" in p
    }


def instance_at(stack_set: Any, account: str, region: str) -> Any:
    for instance in stack_set.instances.stack_instances:
        if instance.account_id == account and instance.region_name == region:
            return instance
    return None


def new_instance(stack_set: Any, account: str, region: str, ou: str | None) -> Any:
    """An instance with no stack yet (moto's constructor would create one at once)."""
    from moto.cloudformation.models import StackInstance

    instance = object.__new__(StackInstance)
    instance.account_id = account
    instance.region_name = region
    instance.stackset_id = stack_set.id
    instance.stack_name = stack_set.instances.stack_name
    instance.name = stack_set.name
    instance.template = stack_set.template
    instance.parameters = []
    instance.permission_model = stack_set.permission_model
    instance.stack = None
    instance.estate_strict = True
    instance.estate_ou = ou
    return instance


def stack_alive(instance: Any) -> bool:
    stack = getattr(instance, "stack", None)
    if stack is None:
        return False
    if not getattr(instance, "estate_strict", False):
        return stack.status != "DELETE_COMPLETE"
    from moto.cloudformation.models import cloudformation_backends

    member = cloudformation_backends[instance.account_id][instance.region_name]
    return stack.stack_id in member.stacks and stack.status != "DELETE_COMPLETE"


def set_status(instance: Any, status: str, detailed: str, reason: str | None = None) -> None:
    instance.estate_strict = True
    instance.estate_status = status
    instance.estate_detailed = detailed
    instance.estate_reason = reason


def deploy(stack_set: Any, instance: Any) -> None:
    """Creates or updates the instance's stack in its account with the stack set's template
    and parameters, the instance's overrides applied (raises what CloudFormation raises)."""
    from moto.cloudformation.models import cloudformation_backends

    parameters = _as_dict(stack_set.parameters)
    parameters.update(_as_dict(instance.parameters))
    member = cloudformation_backends[instance.account_id][instance.region_name]
    instance.template = stack_set.template
    if stack_alive(instance):
        instance.stack.update(stack_set.template, None, parameters=parameters)
    else:
        name = f"StackSet-{stack_set.name}-{uuid.uuid4()}"
        instance.stack = member.create_stack(
            name=name, template=stack_set.template, parameters=parameters
        )


def remove_stack(instance: Any) -> None:
    from moto.cloudformation.models import cloudformation_backends

    if stack_alive(instance):
        member = cloudformation_backends[instance.account_id][instance.region_name]
        member.delete_stack(instance.stack.stack_id)


# ---------------------------------------------------------------------- operations


class Target:
    def __init__(self, account: str, region: str, ou: str | None = None) -> None:
        self.account, self.region, self.ou = account, region, ou
        self.status = "PENDING"
        self.reason: str | None = None
        self.gate: dict[str, str] | None = None

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Account": self.account, "Region": self.region, "Status": self.status}
        if self.reason:
            out["StatusReason"] = self.reason
        if self.gate:
            out["AccountGateResult"] = self.gate
        if self.ou:
            out["OrganizationalUnitId"] = self.ou
        return out


class Operation:
    """One stack-set operation, RUNNING until due, then carried out at once."""

    def __init__(
        self,
        stack_set: Any,
        action: str,
        operation_id: str | None,
        targets: list[Target],
        preferences: dict[str, Any] | None,
        **work: Any,
    ) -> None:
        from moto.core.utils import utcnow

        self.id = operation_id or str(uuid.uuid4())
        self.stack_set = stack_set
        self.action = action
        self.targets = targets
        self.preferences = dict(preferences or {})
        self.work = work
        self.started = time.time()
        self.polls = 0
        self.done = False
        self.drifts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.record: dict[str, Any] = {
            "OperationId": self.id,
            "Action": action,
            "Status": "RUNNING",
            "CreationTimestamp": utcnow(),
            "Instances": [],
        }
        if self.preferences:
            self.record["OperationPreferences"] = self.preferences
        stack_set.operations.append(self.record)
        stack_set.estate_operations = getattr(stack_set, "estate_operations", {})
        stack_set.estate_operations[self.id] = self
        PENDING.append(self)

    @property
    def account(self) -> str:
        return self.stack_set.estate_admin_account

    def due(self, now: float) -> bool:
        seconds = setting(self.account, "OperationSeconds", OPERATION_SECONDS)
        polls = setting(self.account, "OperationPolls", OPERATION_POLLS)
        elapsed = now - self.started
        return elapsed >= seconds and (
            self.polls >= polls or elapsed >= max(10 * seconds, 3.0)
        )

    def describe(self) -> dict[str, Any]:
        s = self.stack_set
        out: dict[str, Any] = {
            "OperationId": self.id,
            "StackSetId": s.id,
            "Action": self.action,
            "Status": self.record["Status"],
            "CreationTimestamp": self.record["CreationTimestamp"],
            "StatusDetails": {
                "FailedStackInstancesCount": sum(t.status == "FAILED" for t in self.targets)
            },
        }
        if self.preferences:
            out["OperationPreferences"] = self.preferences
        if "EndTimestamp" in self.record:
            out["EndTimestamp"] = self.record["EndTimestamp"]
        if self.action == "DELETE":
            out["RetainStacks"] = bool(self.work.get("retain"))
        if s.administration_role_arn:
            out["AdministrationRoleARN"] = s.administration_role_arn
        if s.execution_role_name:
            out["ExecutionRoleName"] = s.execution_role_name
        if self.work.get("deployment_targets"):
            out["DeploymentTargets"] = self.work["deployment_targets"]
        if self.action == "DETECT_DRIFT" and self.done:
            out["StackSetDriftDetectionDetails"] = s.stack_set_drift_detection_details
        return out

    # ------------------------------------------------------------ carrying it out

    def _batches(self) -> list[list[Target]]:
        """Targets by Region, RegionOrder first."""
        order = [str(r) for r in self.preferences.get("RegionOrder") or []]
        regions: list[str] = []
        for r in order + [t.region for t in self.targets]:
            if r not in regions and any(t.region == r for t in self.targets):
                regions.append(r)
        return [[t for t in self.targets if t.region == r] for r in regions]

    def _limit(self, count_key: str, percent_key: str, size: int, default: int) -> int:
        if self.preferences.get(count_key) is not None:
            return int(self.preferences[count_key])
        if self.preferences.get(percent_key) is not None:
            return math.floor(int(self.preferences[percent_key]) * size / 100)
        return default

    def finish(self) -> None:
        from moto.core.utils import utcnow

        self.done = True
        if self in PENDING:
            PENDING.remove(self)
        parallel = str(self.preferences.get("RegionConcurrencyType", "")).upper() == "PARALLEL"
        failed = False
        for region in self._batches():
            if failed and not parallel:
                for t in region:
                    self._cancel(t, CANCELLED_REASON)
                continue
            tolerance = self._limit(
                "FailureToleranceCount", "FailureTolerancePercentage", len(region), 0
            )
            concurrency = max(
                1, self._limit("MaxConcurrentCount", "MaxConcurrentPercentage", len(region), 1)
            )
            failures, exceeded = 0, False
            for start in range(0, len(region), concurrency):
                for t in region[start : start + concurrency]:
                    if exceeded:
                        self._cancel(t, CANCELLED_REASON)
                        continue
                    self._run(t)
                    failures += t.status == "FAILED"
                if failures > tolerance:
                    exceeded = True
            failed = failed or exceeded
        if self.action == "DETECT_DRIFT":
            self._drift_summary(failed)
        self.record["Status"] = "FAILED" if failed else "SUCCEEDED"
        self.record["EndTimestamp"] = utcnow()

    def stop(self) -> None:
        from moto.core.utils import utcnow

        self.done = True
        if self in PENDING:
            PENDING.remove(self)
        for t in self.targets:
            self._cancel(t, STOPPED_REASON)
        self.record["Status"] = "STOPPED"
        self.record["EndTimestamp"] = utcnow()

    def _cancel(self, t: Target, reason: str) -> None:
        t.status, t.reason = "CANCELLED", reason
        instance = instance_at(self.stack_set, t.account, t.region)
        if instance is None or self.action in ("DETECT_DRIFT",):
            return
        if self.action == "DELETE":
            set_status(instance, getattr(instance, "estate_status", None) or "CURRENT", "CANCELLED",
                       getattr(instance, "estate_reason", None))
        else:
            set_status(instance, "OUTDATED", "CANCELLED", reason)

    def _gate_skipped(self, t: Target) -> dict[str, str]:
        return {
            "Status": "SKIPPED",
            "StatusReason": (
                f"Function not found: arn:aws:lambda:{t.region}:{t.account}:function:"
                "AWSCloudFormationStackSetAccountGate"
            ),
        }

    def _fail(self, t: Target, reason: str, instance: Any, status: str = "OUTDATED") -> None:
        t.status, t.reason = "FAILED", reason
        if instance is not None and self.action != "DETECT_DRIFT":
            set_status(instance, status, "FAILED", reason)

    def _run(self, t: Target) -> None:
        s = self.stack_set
        instance = instance_at(s, t.account, t.region)
        problem = admin_problem(s)
        if problem is not None:
            t.gate = {"Status": "FAILED", "StatusReason": problem}
            self._fail(t, problem, instance, "INOPERABLE" if self.action == "DELETE" else "OUTDATED")
            return
        t.gate = self._gate_skipped(t)
        try:
            getattr(self, "_run_" + self.action.lower())(t, instance)
        except Exception as e:  # an emulator defect must not stop the other instances
            self._fail(t, f"{type(e).__name__}: {e}", instance_at(s, t.account, t.region))
        # StackInstanceSummary.LastOperationId: "The last unique ID of a StackSet operation
        # performed on a stack instance" (drift detection included).
        after = instance_at(s, t.account, t.region)
        if after is not None:
            after.estate_last_operation = self.record.get("OperationId")

    def _run_create(self, t: Target, instance: Any) -> None:
        if instance is None:  # removed meanwhile
            instance = new_instance(self.stack_set, t.account, t.region, t.ou)
            self.stack_set.instances.stack_instances.append(instance)
        if getattr(instance, "estate_existing", False) and stack_alive(instance):
            t.status = "SUCCEEDED"
            return
        problem = execution_problem(self.stack_set, t.account)
        if problem is not None:
            self._fail(t, problem, instance)
            return
        instance.parameters = list(self.work.get("overrides") or [])
        self._deploy(t, instance)

    def _run_update(self, t: Target, instance: Any) -> None:
        if instance is None:
            t.status, t.reason = "FAILED", "The specified stack instance doesn't exist."
            return
        problem = execution_problem(self.stack_set, t.account)
        if problem is not None:
            self._fail(t, problem, instance)
            return
        overrides = self.work.get("overrides")
        if overrides is not None:
            previous = _as_dict(instance.parameters)
            merged = []
            for p in overrides:
                key = p.get("ParameterKey")
                if str(p.get("UsePreviousValue", "")).lower() == "true":
                    if key in previous:
                        merged.append({"ParameterKey": key, "ParameterValue": previous[key]})
                elif "ParameterValue" in p:
                    merged.append({"ParameterKey": key, "ParameterValue": p["ParameterValue"]})
            instance.parameters = merged
        self._deploy(t, instance)

    def _deploy(self, t: Target, instance: Any) -> None:
        try:
            deploy(self.stack_set, instance)
        except Exception as e:  # what CloudFormation would report for the stack
            self._fail(t, getattr(e, "message", None) or str(e), instance)
            return
        t.status = "SUCCEEDED"
        set_status(instance, "CURRENT", "SUCCEEDED")

    def _run_delete(self, t: Target, instance: Any) -> None:
        if instance is None:
            t.status = "SUCCEEDED"
            return
        if not self.work.get("retain") and stack_alive(instance):
            problem = execution_problem(self.stack_set, t.account)
            if problem is not None:
                self._fail(t, problem, instance, "INOPERABLE")
                return
            try:
                remove_stack(instance)
            except Exception as e:
                self._fail(t, getattr(e, "message", None) or str(e), instance, "INOPERABLE")
                return
        self.stack_set.instances.stack_instances.remove(instance)
        t.status = "SUCCEEDED"

    def _run_detect_drift(self, t: Target, instance: Any) -> None:
        from moto.core.utils import utcnow

        if instance is None:
            t.status = "SUCCEEDED"
            return
        problem = execution_problem(self.stack_set, t.account)
        if problem is not None:
            self._fail(t, problem, instance)
            return
        if getattr(instance, "stack", None) is None:
            t.status, t.reason = "FAILED", "The stack instance has no stack to check for drift."
            return
        now = utcnow()
        instance.estate_drift_checked = now
        if stack_alive(instance):
            instance.estate_drift_status = "IN_SYNC"
        else:
            instance.estate_drift_status = "DRIFTED"
            self.drifts[(t.account, t.region)] = deleted_resources(instance, now)
        t.status = "SUCCEEDED"

    def _drift_summary(self, failed: bool) -> None:
        from moto.core.utils import utcnow

        instances = self.stack_set.instances.stack_instances
        statuses = [getattr(i, "estate_drift_status", "NOT_CHECKED") for i in instances]
        failures = sum(t.status == "FAILED" for t in self.targets)
        self.stack_set.stack_set_drift_detection_details = {
            "DriftStatus": "DRIFTED" if "DRIFTED" in statuses else "IN_SYNC",
            "DriftDetectionStatus": "FAILED" if failed else ("PARTIAL_SUCCESS" if failures else "COMPLETED"),
            "LastDriftCheckTimestamp": utcnow(),
            "TotalStackInstancesCount": len(instances),
            "DriftedStackInstancesCount": statuses.count("DRIFTED"),
            "InSyncStackInstancesCount": statuses.count("IN_SYNC"),
            "InProgressStackInstancesCount": 0,
            "FailedStackInstancesCount": failures,
        }


def deleted_resources(instance: Any, now: Any) -> list[dict[str, Any]]:
    stack = instance.stack
    resources = (getattr(stack, "template_dict", None) or {}).get("Resources", {}) or {}
    out = []
    for logical_id, resource in resources.items():
        physical = None
        try:
            physical = getattr(stack.resource_map._parsed_resources.get(logical_id), "physical_resource_id", None)
        except Exception:
            physical = None
        summary: dict[str, Any] = {
            "StackId": stack.stack_id,
            "LogicalResourceId": logical_id,
            "ResourceType": (resource or {}).get("Type", ""),
            "StackResourceDriftStatus": "DELETED",
            "Timestamp": now,
        }
        if isinstance(physical, str):
            summary["PhysicalResourceId"] = physical
        out.append(summary)
    return out


# Operations still RUNNING, in the order they were started.
PENDING: list[Operation] = []


def complete_due() -> None:
    """Finishes every operation whose time has come (AWS works in the background)."""
    now = time.time()
    with LOCK:
        for op in list(PENDING):
            if op.due(now):
                try:
                    op.finish()
                except Exception:  # never let it break the request that happened to come
                    op.done = True
                    op.record["Status"] = "FAILED"
                    if op in PENDING:
                        PENDING.remove(op)


def running(stack_set: Any) -> Operation | None:
    for op in getattr(stack_set, "estate_operations", {}).values():
        if not op.done:
            return op
    return None


def start_check(stack_set: Any, operation_id: str | None) -> None:
    """What AWS refuses before starting an operation on `stack_set`."""
    if running(stack_set) is not None:
        raise Refused("OperationInProgressException", IN_PROGRESS)
    if operation_id and any(o.get("OperationId") == operation_id for o in stack_set.operations):
        raise Refused("OperationIdAlreadyExistsException", "The specified operation ID already exists.")
    if stack_set.permission_model == "SERVICE_MANAGED":
        service_managed_check(stack_set.estate_admin_account)


def service_managed_check(account: str) -> Any:
    org = organization(account)
    if org is None or org.org.master_account_id != account:
        raise Refused("ValidationError", NOT_ADMIN)
    if not trusted_access(org):
        raise Refused("ValidationError", NO_TRUSTED_ACCESS)
    return org


# ------------------------------------------------------------- organization units


def _ancestors(org: Any, account: Any) -> list[str]:
    found, parent = [], account.parent_id
    while parent:
        found.append(parent)
        parent = next((u.parent_id for u in org.ou if u.id == parent), None)
    return found


def accounts_in_units(org: Any, units: list[str]) -> list[tuple[str, str]]:
    """(account, unit named in `units` it is under): every ACTIVE account in those units or
    below them, the management account excepted."""
    out = []
    for account in org.accounts:
        if account.id == org.org.master_account_id:
            continue
        if getattr(account, "state", "ACTIVE") != "ACTIVE":
            continue
        chain = _ancestors(org, account)
        unit = next((u for u in chain if u in units), None)
        if unit is not None:
            out.append((account.id, unit))
    return out


def service_managed_accounts(org: Any, targets: dict[str, Any], creating: bool) -> list[tuple[str, str | None]]:
    units = [str(u) for u in targets.get("OrganizationalUnitIds") or []]
    listed = [str(a) for a in targets.get("Accounts") or []]
    kind = str(targets.get("AccountFilterType") or "").upper()
    if not units:
        raise Refused("ValidationError", ONLY_UNITS)
    if creating and listed and not kind:
        raise Refused(
            "ValidationError",
            "When performing create operations, if you specify both OrganizationalUnitIds and "
            "Accounts, you must also specify the AccountFilterType property.",
        )
    if creating and kind == "UNION":
        raise Refused("ValidationError", "AccountFilterType UNION is not supported for CreateStackInstances.")
    found: list[tuple[str, str | None]] = list(accounts_in_units(org, units))
    if kind == "INTERSECTION":
        found = [(a, u) for a, u in found if a in listed]
    elif kind == "DIFFERENCE":
        found = [(a, u) for a, u in found if a not in listed]
    elif kind == "UNION":
        found += [(a, None) for a in listed if a not in {f[0] for f in found}]
    return found


# ----------------------------------------------------------- request handling


def _params(response: Any) -> dict[str, Any]:
    return response._get_params()


def _given(response: Any, name: str) -> bool:
    """Whether the request has `name`, even as an empty list (query protocol: "Name=")."""
    return any(k == name or k.startswith(name + ".") for k in response.querystring)


def _targets_of(response: Any, stack_set: Any, creating: bool) -> tuple[list[Target], dict[str, Any] | None]:
    """The (account, Region) pairs a request names, and its DeploymentTargets."""
    p = _params(response)
    regions = [str(r) for r in p.get("Regions") or []]
    accounts = [str(a) for a in p.get("Accounts") or []]
    targets = p.get("DeploymentTargets") or None
    if stack_set.permission_model == "SERVICE_MANAGED":
        if accounts or not targets:
            raise Refused("ValidationError", ONLY_UNITS)
        org = service_managed_check(stack_set.estate_admin_account)
        if creating:
            pairs = service_managed_accounts(org, targets, creating=True)
        else:
            units = [str(u) for u in targets.get("OrganizationalUnitIds") or []]
            listed = [str(a) for a in targets.get("Accounts") or []]
            if not units and listed:
                pairs = [(a, None) for a in listed]
            else:
                pairs = service_managed_accounts(org, targets, creating=False)
                # Instances made through these units, wherever their account is now.
                known = {a for a, _ in pairs}
                for i in stack_set.instances.stack_instances:
                    if getattr(i, "estate_ou", None) in units and i.account_id not in known:
                        pairs.append((i.account_id, i.estate_ou))
                        known.add(i.account_id)
        return [Target(a, r, u) for r in regions for a, u in pairs], targets
    if targets and targets.get("OrganizationalUnitIds"):
        raise Refused(
            "ValidationError",
            "StackSets with SELF_MANAGED permission model can only have accounts as target",
        )
    if not accounts and targets:
        accounts = [str(a) for a in targets.get("Accounts") or []]
    return [Target(a, r) for r in regions for a in accounts], None


def _stack_set(response: Any) -> Any:
    stack_set = response.cloudformation_backend.describe_stack_set(response._get_param("StackSetName"))
    stack_set.estate_admin_account = response.current_account
    return stack_set


def _result(operation: Operation) -> Any:
    from moto.core.responses import ActionResult

    return ActionResult({"OperationId": operation.id})


def create_stack_set(response: Any, original: Callable[[Any], Any]) -> Any:
    p = _params(response)
    name = p.get("StackSetName")
    backend = response.cloudformation_backend
    token = p.get("ClientRequestToken")
    for s in backend.stacksets.values():
        if s.name == name and s.status != "DELETED":
            # The same request again (its answer lost): answered as the first was (rule 6).
            if token and getattr(s, "estate_token", None) == token:
                from moto.core.responses import ActionResult

                return ActionResult({"StackSetId": s.id})
            raise Refused("NameAlreadyExistsException", "The specified name is already in use.")
    model = p.get("PermissionModel") or "SELF_MANAGED"
    if model == "SERVICE_MANAGED":
        service_managed_check(response.current_account)
    result = original(response)
    stack_set = _stack_set(response)
    stack_set.estate_token = token
    if model == "SERVICE_MANAGED":
        stack_set.administration_role_arn = None
        stack_set.execution_role_name = None
        if p.get("AutoDeployment"):
            stack_set.auto_deployment = dict(p["AutoDeployment"])
    return result


def update_stack_set(response: Any, original: Callable[[Any], Any]) -> Any:
    p = _params(response)
    stack_set = _stack_set(response)
    operation_id = p.get("OperationId")
    start_check(stack_set, operation_id)
    named = any(_given(response, k) for k in ("Accounts", "Regions", "DeploymentTargets"))
    if named:
        targets, deployment = _targets_of(response, stack_set, creating=False)
        for t in targets:
            if instance_at(stack_set, t.account, t.region) is None:
                raise Refused(
                    "StackInstanceNotFoundException", "The specified stack instance doesn't exist."
                )
    else:
        deployment = None
        targets = [
            Target(i.account_id, i.region_name, getattr(i, "estate_ou", None))
            for i in stack_set.instances.stack_instances
            if getattr(i, "estate_status", None) != "INOPERABLE"
        ]
    # The stack set itself changes now; its stacks when the operation runs.
    template = p.get("TemplateBody")
    if p.get("TemplateURL"):
        template = response._get_stack_from_s3_url(p["TemplateURL"])
    template_given = template is not None
    if template_given:
        stack_set.template = template
        stack_set.instances.template = template
    if p.get("Description") is not None:
        stack_set.description = p["Description"]
    parameters_given = _given(response, "Parameters")
    if parameters_given:
        previous = _as_dict(stack_set.parameters)
        resolved = {}
        for item in p.get("Parameters") or []:
            key = item.get("ParameterKey")
            if str(item.get("UsePreviousValue", "")).lower() == "true":
                if key in previous:
                    resolved[key] = previous[key]
            elif "ParameterValue" in item:
                resolved[key] = item["ParameterValue"]
        stack_set.parameters = resolved
    if _given(response, "Tags"):
        stack_set.tags = {t["Key"]: t["Value"] for t in p.get("Tags") or []}
    if stack_set.permission_model == "SELF_MANAGED":
        if p.get("AdministrationRoleARN"):
            stack_set.administration_role_arn = p["AdministrationRoleARN"]
        if p.get("ExecutionRoleName"):
            stack_set.execution_role_name = p["ExecutionRoleName"]
    elif p.get("AutoDeployment"):
        stack_set.auto_deployment = dict(p["AutoDeployment"])
    stack_set.capabilities = p.get("Capabilities") or []
    if named and (template_given or parameters_given):
        for i in stack_set.instances.stack_instances:
            set_status(i, "OUTDATED", getattr(i, "estate_detailed", None) or "SUCCEEDED",
                       getattr(i, "estate_reason", None))
    for t in targets:
        i = instance_at(stack_set, t.account, t.region)
        set_status(i, "OUTDATED", "PENDING", getattr(i, "estate_reason", None))
    op = Operation(stack_set, "UPDATE", operation_id, targets, p.get("OperationPreferences"),
                   deployment_targets=deployment)
    return _result(op)


def create_stack_instances(response: Any, original: Callable[[Any], Any]) -> Any:
    p = _params(response)
    stack_set = _stack_set(response)
    operation_id = p.get("OperationId")
    start_check(stack_set, operation_id)
    targets, deployment = _targets_of(response, stack_set, creating=True)
    return _result(start_create(stack_set, operation_id, targets, p.get("OperationPreferences"),
                                deployment, p.get("ParameterOverrides") or []))


def start_create(
    stack_set: Any,
    operation_id: str | None,
    targets: list[Target],
    preferences: dict[str, Any] | None,
    deployment: dict[str, Any] | None,
    overrides: list[dict[str, Any]],
) -> Operation:
    for t in targets:
        existing = instance_at(stack_set, t.account, t.region)
        if existing is None:
            instance = new_instance(stack_set, t.account, t.region, t.ou)
            set_status(instance, "OUTDATED", "PENDING")
            stack_set.instances.stack_instances.append(instance)
        else:
            existing.estate_existing = True
        if t.ou and stack_set.permission_model == "SERVICE_MANAGED":
            units = getattr(stack_set, "estate_units", {})
            units.setdefault(t.ou, [])
            if t.region not in units[t.ou]:
                units[t.ou].append(t.region)
            stack_set.estate_units = units
    return Operation(stack_set, "CREATE", operation_id, targets, preferences,
                     deployment_targets=deployment, overrides=overrides)


def update_stack_instances(response: Any, original: Callable[[Any], Any]) -> Any:
    p = _params(response)
    stack_set = _stack_set(response)
    operation_id = p.get("OperationId")
    start_check(stack_set, operation_id)
    targets, deployment = _targets_of(response, stack_set, creating=False)
    for t in targets:
        if instance_at(stack_set, t.account, t.region) is None:
            raise Refused("StackInstanceNotFoundException", "The specified stack instance doesn't exist.")
    overrides = (p.get("ParameterOverrides") or []) if _given(response, "ParameterOverrides") else None
    for t in targets:
        i = instance_at(stack_set, t.account, t.region)
        set_status(i, "OUTDATED", "PENDING", getattr(i, "estate_reason", None))
    op = Operation(stack_set, "UPDATE", operation_id, targets, p.get("OperationPreferences"),
                   deployment_targets=deployment, overrides=overrides)
    return _result(op)


def delete_stack_instances(response: Any, original: Callable[[Any], Any]) -> Any:
    p = _params(response)
    stack_set = _stack_set(response)
    operation_id = p.get("OperationId")
    start_check(stack_set, operation_id)
    targets, deployment = _targets_of(response, stack_set, creating=False)
    retain = str(p.get("RetainStacks", "")).lower() == "true"
    op = start_delete(stack_set, operation_id, targets, p.get("OperationPreferences"), deployment, retain)
    return _result(op)


def start_delete(
    stack_set: Any,
    operation_id: str | None,
    targets: list[Target],
    preferences: dict[str, Any] | None,
    deployment: dict[str, Any] | None,
    retain: bool,
) -> Operation:
    for t in targets:
        i = instance_at(stack_set, t.account, t.region)
        if i is not None:
            set_status(i, getattr(i, "estate_status", None) or "CURRENT", "PENDING",
                       getattr(i, "estate_reason", None))
    return Operation(stack_set, "DELETE", operation_id, targets, preferences,
                     deployment_targets=deployment, retain=retain)


def delete_stack_set(response: Any, original: Callable[[Any], Any]) -> Any:
    backend = response.cloudformation_backend
    name = response._get_param("StackSetName")
    for s in backend.stacksets.values():
        if (s.name == name or s.id == name) and s.status != "DELETED" and running(s) is not None:
            raise Refused("OperationInProgressException", IN_PROGRESS)
    return original(response)


def detect_stack_set_drift(response: Any, original: Callable[[Any], Any]) -> Any:
    p = _params(response)
    stack_set = _stack_set(response)
    operation_id = p.get("OperationId")
    start_check(stack_set, operation_id)
    targets = [
        Target(i.account_id, i.region_name, getattr(i, "estate_ou", None))
        for i in stack_set.instances.stack_instances
    ]
    return _result(Operation(stack_set, "DETECT_DRIFT", operation_id, targets, p.get("OperationPreferences")))


def _operation(response: Any) -> tuple[Any, Operation | None]:
    stack_set = _stack_set(response)
    operation_id = response._get_param("OperationId")
    return stack_set, getattr(stack_set, "estate_operations", {}).get(operation_id)


def describe_stack_set_operation(response: Any, original: Callable[[Any], Any]) -> Any:
    from moto.core.responses import ActionResult

    _, op = _operation(response)
    if op is None:
        return original(response)
    if not op.done:
        if op.due(time.time()):
            complete_due()
        else:
            op.polls += 1
    return ActionResult({"StackSetOperation": op.describe()})


def list_stack_set_operation_results(response: Any, original: Callable[[Any], Any]) -> Any:
    from moto.core.responses import ActionResult

    _, op = _operation(response)
    if op is None:
        return original(response)
    wanted = None
    for f in _params(response).get("Filters") or []:
        if f.get("Name") == "OPERATION_RESULT_STATUS":
            wanted = str(f.get("Values"))
    results = [t.result() for t in op.targets if wanted is None or t.status == wanted]
    return ActionResult({"Summaries": results})


def stop_stack_set_operation(response: Any, original: Callable[[Any], Any]) -> Any:
    from moto.core.responses import EmptyResult

    stack_set, op = _operation(response)
    if op is None:
        if not any(o.get("OperationId") == response._get_param("OperationId") for o in stack_set.operations):
            raise Refused("OperationNotFoundException", "The specified ID refers to an operation that doesn't exist.")
        raise Refused("InvalidOperationException", "The specified operation isn't valid.")
    if op.done:
        raise Refused("InvalidOperationException", "The specified operation isn't valid.")
    op.stop()
    return EmptyResult()


def list_stack_instance_resource_drifts(response: Any, original: Callable[[Any], Any]) -> Any:
    from moto.core.responses import ActionResult

    _, op = _operation(response)
    if op is None:
        return original(response)
    p = _params(response)
    key = (str(p.get("StackInstanceAccount")), str(p.get("StackInstanceRegion")))
    wanted = [str(s) for s in p.get("StackInstanceResourceDriftStatuses") or []]
    found = [d for d in op.drifts.get(key, []) if not wanted or d["StackResourceDriftStatus"] in wanted]
    return ActionResult({"Summaries": found})


def list_stack_instances(response: Any, original: Callable[[Any], Any]) -> Any:
    """Pages of at most MaxResults (1 to 100; 100 when not given) with a NextToken while more
    remain (API reference, ListStackInstances: MaxResults "Valid Range: Minimum value of 1.
    Maximum value of 100"). moto answers every instance in one page, so a client that reads
    only the first page, or a count of calls, would pass here and not against AWS."""
    from moto.core.responses import ActionResult

    p = _params(response)
    limit = int(p.get("MaxResults") or 100)
    if not 1 <= limit <= 100:
        raise Refused(
            "ValidationError",
            f"1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy "
            "constraint: Member must have value less than or equal to 100",
        )
    token = p.get("NextToken")
    start = int(token) if token and str(token).isdigit() else 0
    summaries = list(original(response).result.get("Summaries", []))
    result: dict[str, Any] = {"Summaries": summaries[start : start + limit]}
    if start + limit < len(summaries):
        result["NextToken"] = str(start + limit)
    return ActionResult(result)


STRICT: dict[str, Callable[[Any, Callable[[Any], Any]], Any]] = {
    "create_stack_set": create_stack_set,
    "update_stack_set": update_stack_set,
    "delete_stack_set": delete_stack_set,
    "create_stack_instances": create_stack_instances,
    "update_stack_instances": update_stack_instances,
    "delete_stack_instances": delete_stack_instances,
    "detect_stack_set_drift": detect_stack_set_drift,
    "describe_stack_set_operation": describe_stack_set_operation,
    "list_stack_set_operation_results": list_stack_set_operation_results,
    "stop_stack_set_operation": stop_stack_set_operation,
    "list_stack_instance_resource_drifts": list_stack_instance_resource_drifts,
    "list_stack_instances": list_stack_instances,
}

# Read-only actions before which background work moves on.
ADVANCING = [
    "describe_stack_set",
    "list_stack_sets",
    "describe_stack_instance",
    "list_stack_set_operations",
    "describe_stacks",
    "list_stacks",
]


# --------------------------------------------------- CloudFormation organizations access


def _org_admin(response: Any) -> Any:
    org = organization(response.current_account)
    if org is None or org.org.master_account_id != response.current_account:
        raise Refused(
            "InvalidOperationException",
            "Only the management account of an organization can manage organizations access.",
        )
    return org


def activate_organizations_access(response: Any) -> Any:
    from moto.core.responses import ActionResult

    with LOCK:
        _org_admin(response).enable_aws_service_access(ServicePrincipal=ORG_SERVICE)
    return ActionResult({})


def deactivate_organizations_access(response: Any) -> Any:
    from moto.core.responses import ActionResult

    with LOCK:
        org = _org_admin(response)
        org.services[:] = [s for s in org.services if s.get("ServicePrincipal") != ORG_SERVICE]
    return ActionResult({})


def describe_organizations_access(response: Any) -> Any:
    from moto.core.responses import ActionResult

    with LOCK:
        status = "ENABLED" if trusted_access(_org_admin(response)) else "DISABLED"
    return ActionResult({"Status": status})


# ------------------------------------------------------------------ auto-deployment


def auto_deploy(org: Any, account_id: str) -> None:
    """After `account_id` moved: instances for the units it is now under, none for those it
    left (service-managed stack sets of the organization with AutoDeployment enabled)."""
    from moto.cloudformation.models import cloudformation_backends

    management = org.org.master_account_id
    if not enabled(management) or account_id == management:
        return
    account = next((a for a in org.accounts if a.id == account_id), None)
    if account is None:
        return
    chain = _ancestors(org, account)
    for backend in list(cloudformation_backends[management].values()):
        for stack_set in list(backend.stacksets.values()):
            auto = getattr(stack_set, "auto_deployment", None) or {}
            if stack_set.status == "DELETED" or stack_set.permission_model != "SERVICE_MANAGED":
                continue
            if str(auto.get("Enabled", "")).lower() != "true":
                continue
            stack_set.estate_admin_account = management
            units: dict[str, list[str]] = getattr(stack_set, "estate_units", {})
            unit = next((u for u in chain if u in units), None)
            have = [i for i in stack_set.instances.stack_instances if i.account_id == account_id]
            if unit is not None:
                targets = [Target(account_id, r, unit) for r in units[unit]
                           if not any(i.region_name == r for i in have)]
                if targets:
                    start_create(stack_set, None, targets, None, {"OrganizationalUnitIds": [unit]}, [])
            elif have:
                retain = str(auto.get("RetainStacksOnAccountRemoval", "")).lower() == "true"
                targets = [Target(i.account_id, i.region_name, getattr(i, "estate_ou", None)) for i in have]
                start_delete(stack_set, None, targets, None, None, retain)


# ------------------------------------------------------------------------ test hook


def delete_stack_in_member(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """EstateEmulator.DeleteStackInMember: deletes the stack behind one stack instance in its
    account, as someone working there could."""
    from moto.cloudformation.models import cloudformation_backends

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    management = str(body["ManagementAccount"])
    name, account, region = str(body["StackSetName"]), str(body["Account"]), str(body["Region"])
    wanted_region = body.get("StackSetRegion")
    answer: dict[str, Any] = {"message": f"no instance {account}/{region} of stack set {name}"}
    status = "400 Bad Request"
    with LOCK:
        for backend_region, backend in list(cloudformation_backends[management].items()):
            if wanted_region and backend_region != wanted_region:
                continue
            for stack_set in backend.stacksets.values():
                if stack_set.name != name or stack_set.status == "DELETED":
                    continue
                instance = instance_at(stack_set, account, region)
                if instance is None or getattr(instance, "stack", None) is None:
                    continue
                stack = instance.stack
                member = cloudformation_backends[account][region]
                if stack.stack_id in member.stacks:
                    member.delete_stack(stack.stack_id)
                else:  # moto's hidden stack of a service-managed instance
                    stack.delete()
                answer, status = {"StackId": stack.stack_id}, "200 OK"
    start_response(status, [("Content-Type", "application/x-amz-json-1.1")])
    return [json.dumps(answer).encode()]


# -------------------------------------------------------------------------- install


def install(route: Callable[[str], Callable[[Any], Any]]) -> None:
    from moto.cloudformation.models import StackInstance
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.organizations.models import OrganizationsBackend

    def gated(name: str, strict: Callable[[Any, Callable[[Any], Any]], Any] | None) -> None:
        original = getattr(CloudFormationResponse, name)

        def action(self: Any) -> Any:
            complete_due()
            if strict is None or not enabled(self.current_account):
                return original(self)
            with LOCK:
                return strict(self, original)

        action.__name__ = name
        setattr(CloudFormationResponse, name, action)

    for name, strict in STRICT.items():
        gated(name, strict)
    for name in ADVANCING:
        gated(name, None)

    # Rule 6, for stacks too (every account: a retried CreateStack is the same request).
    original_create_stack = CloudFormationResponse.create_stack

    def create_stack(self: Any) -> Any:
        from moto.core.responses import ActionResult

        name = self._get_param("StackName")
        token = self._get_param("ClientRequestToken")
        with LOCK:
            for stack in self.cloudformation_backend.stacks.values():
                if (
                    token
                    and stack.name == name
                    and stack.status != "DELETE_COMPLETE"
                    and getattr(stack, "estate_token", None) == token
                ):
                    return ActionResult({"StackId": stack.stack_id})
            result = original_create_stack(self)
            for stack in self.cloudformation_backend.stacks.values():
                if stack.name == name and stack.status != "DELETE_COMPLETE":
                    stack.estate_token = token
            return result

    CloudFormationResponse.create_stack = create_stack

    # Not in moto: served for every account (they change nothing moto serves).
    CloudFormationResponse.activate_organizations_access = activate_organizations_access
    CloudFormationResponse.deactivate_organizations_access = deactivate_organizations_access
    CloudFormationResponse.describe_organizations_access = describe_organizations_access

    original_to_dict = StackInstance.to_dict

    def to_dict(self: Any) -> Any:
        summary = original_to_dict(self)
        if not getattr(self, "estate_strict", False):
            return summary
        stack = getattr(self, "stack", None)
        if stack is None:
            summary.pop("StackId", None)
        else:
            summary["StackId"] = stack.stack_id
        summary["Status"] = getattr(self, "estate_status", None) or "CURRENT"
        last = getattr(self, "estate_last_operation", None)
        if last:
            summary["LastOperationId"] = last
        summary["StackInstanceStatus"] = {
            "DetailedStatus": getattr(self, "estate_detailed", None) or "SUCCEEDED"
        }
        reason = getattr(self, "estate_reason", None)
        if reason:
            summary["StatusReason"] = reason
        else:
            summary.pop("StatusReason", None)
        if getattr(self, "estate_ou", None):
            summary["OrganizationalUnitId"] = self.estate_ou
        return summary

    StackInstance.to_dict = to_dict

    original_move = OrganizationsBackend.move_account

    def move_account(self: Any, **kwargs: Any) -> Any:
        result = original_move(self, **kwargs)
        if self.org is not None:
            with LOCK:
                auto_deploy(self, kwargs["AccountId"])
        return result

    OrganizationsBackend.move_account = move_account

    route("EstateEmulator.DeleteStackInMember")(delete_stack_in_member)

"""Proves the rules of stacksets_strict.py against a running emulator (estate_moto.py).

Starts the emulator on a free port, makes fresh management accounts as bootstrap.py does
(AssumeRole into a new 12-digit account, CreateOrganization), opts one organization in
(on by default; EstateEmulator.Configure "StrictStackSets" per organization) and checks each rule with boto3; checks
that an organization that did not opt in sees moto's behaviour unchanged, and that
ESTATE_EMULATOR_STRICT_STACKSETS=0 opts every organization out. Exits non-zero on failure.

Usage: check_stacksets_strict.py   (with the project's venv: .venv/bin/python)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from typing import Any

import boto3
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = "us-east-1"
ADMIN = "AWSCloudFormationStackSetAdministrationRole"
EXEC = "AWSCloudFormationStackSetExecutionRole"
SERVICE = "member.org.stacksets.cloudformation.amazonaws.com"

TEMPLATE = json.dumps(
    {
        "Parameters": {"Env": {"Type": "String", "Default": "dev"}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    }
)
# moto names a self-managed instance's stack "StackSet:<name>", which no queue name accepts.
TEMPLATE_NULL = json.dumps({"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}})
TEMPLATE_2 = json.dumps(
    {
        "Parameters": {"Env": {"Type": "String", "Default": "dev"}},
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Topic": {"Type": "AWS::SNS::Topic"},
        },
    }
)


class Emulator:
    def __init__(self, env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="estate-emulator-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "estate_moto.py"), "0", "--parent-pid", str(os.getpid())],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            cwd=HERE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"emulator did not start: {line!r}; log in {self.log.name}")
        self.endpoint = f"http://127.0.0.1:{line.split()[1]}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def client(self, service: str, creds: dict[str, str] | None = None, region: str = REGION) -> Any:
        if creds is None:
            creds = {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "check", "SessionToken": ""}
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"] or None,
        )

    def configure(self, management: str, **settings: Any) -> None:
        body = json.dumps({"ManagementAccount": management, **settings}).encode()
        self.target("EstateEmulator.Configure", body)

    def target(self, target: str, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(
            self.endpoint + "/",
            data=body,
            headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
        )
        with urllib.request.urlopen(request) as answer:
            return json.loads(answer.read() or b"{}")


class Org:
    """A fresh management account with an organization, as bootstrap.py makes one."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.id = str(random.randint(10**11, 10**12 - 1))
        self.creds = emu.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{self.id}:role/OrganizationAccountAccessRole",
            RoleSessionName="estate-check",
        )["Credentials"]
        self.org = self.client("organizations")
        self.org.create_organization(FeatureSet="ALL")
        self.root = self.org.list_roots()["Roots"][0]["Id"]
        self.cf = self.client("cloudformation")

    def client(self, service: str) -> Any:
        return self.emu.client(service, self.creds)

    def member(self, account: str, service: str) -> Any:
        creds = self.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
            RoleSessionName="estate-check-member",
        )["Credentials"]
        return self.emu.client(service, creds)

    def new_account(self, name: str) -> str:
        status = self.org.create_account(AccountName=name, Email=f"{name}-{self.id}@example.com")
        request = status["CreateAccountStatus"]["Id"]
        for _ in range(100):
            s = self.org.describe_create_account_status(CreateAccountRequestId=request)["CreateAccountStatus"]
            if s["State"] == "SUCCEEDED":
                return s["AccountId"]
            assert s["State"] == "IN_PROGRESS", s
            time.sleep(0.05)
        raise AssertionError(f"account {name} never created")

    def unit(self, name: str, parent: str) -> str:
        return self.org.create_organizational_unit(ParentId=parent, Name=name)["OrganizationalUnit"]["Id"]

    def move(self, account: str, destination: str) -> None:
        source = self.org.list_parents(ChildId=account)["Parents"][0]["Id"]
        self.org.move_account(AccountId=account, SourceParentId=source, DestinationParentId=destination)

    def wait(self, stack_set: str, operation: str) -> dict[str, Any]:
        for _ in range(200):
            op = self.cf.describe_stack_set_operation(StackSetName=stack_set, OperationId=operation)[
                "StackSetOperation"
            ]
            if op["Status"] not in ("RUNNING", "QUEUED", "STOPPING"):
                return op
            time.sleep(0.02)
        raise AssertionError(f"operation {operation} on {stack_set} never ended")

    def instances(self, stack_set: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (i["Account"], i["Region"]): i
            for i in self.cf.list_stack_instances(StackSetName=stack_set)["Summaries"]
        }

    def results(self, stack_set: str, operation: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (r["Account"], r["Region"]): r
            for r in self.cf.list_stack_set_operation_results(StackSetName=stack_set, OperationId=operation)[
                "Summaries"
            ]
        }


def error_code(call: Any, **kwargs: Any) -> tuple[str, str]:
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"]["Message"]
    raise AssertionError(f"{call.__name__} succeeded; an error was expected")


def trust(principal: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


def stack_names(org: Org, account: str) -> dict[str, dict[str, Any]]:
    cf = org.member(account, "cloudformation") if account != org.id else org.cf
    return {s["StackId"]: s for s in cf.describe_stacks()["Stacks"]}


def admin_message(account: str) -> str:
    return f"Account {account} should have '{ADMIN}' role with trust relationship to CloudFormation service."


def exec_message(account: str) -> str:
    return f"Account {account} should have '{EXEC}' role with trust relationship to Role '{ADMIN}'."


def ok(what: str) -> None:
    print(f"ok: {what}", flush=True)


# ------------------------------------------------------------------------ checks


def check_off(emu: Emulator) -> None:
    """An organization that opted out: moto's behaviour, unchanged."""
    o = Org(emu)
    emu.configure(o.id, StrictStackSets=False)
    cf = o.cf
    cf.create_stack_set(StackSetName="plain", TemplateBody=TEMPLATE_NULL)
    op = cf.create_stack_instances(StackSetName="plain", Accounts=[o.id], Regions=[REGION])["OperationId"]
    first = cf.describe_stack_set_operation(StackSetName="plain", OperationId=op)["StackSetOperation"]
    assert first["Status"] == "SUCCEEDED", first
    instance = o.instances("plain")[(o.id, REGION)]
    assert instance["Status"] == "CURRENT" and "StackId" in instance, instance
    # No operation in progress, no role needed, drift IN_SYNC at once.
    cf.update_stack_set(StackSetName="plain", TemplateBody=TEMPLATE_NULL)
    drift = cf.detect_stack_set_drift(StackSetName="plain")["OperationId"]
    assert cf.describe_stack_set_operation(StackSetName="plain", OperationId=drift)["StackSetOperation"][
        "Status"
    ] == "SUCCEEDED"
    assert o.instances("plain")[(o.id, REGION)]["DriftStatus"] == "IN_SYNC"
    # Service-managed without trusted access, and no AutoDeployment kept: as moto has it.
    cf.create_stack_set(StackSetName="plain-sm", TemplateBody=TEMPLATE_NULL, PermissionModel="SERVICE_MANAGED")
    assert "AutoDeployment" not in cf.describe_stack_set(StackSetName="plain-sm")["StackSet"]
    ok("without StrictStackSets, stack sets behave as moto's (instant SUCCEEDED, no roles, no trusted access)")


def check_admin_role(o: Org, a: str) -> None:
    """Rule 1: no administration role: the call is accepted, the operation fails."""
    cf = o.cf
    cf.create_stack_set(StackSetName="no-admin", TemplateBody=TEMPLATE)
    op = cf.create_stack_instances(
        StackSetName="no-admin", Accounts=[a], Regions=["us-east-1", "us-west-2"]
    )["OperationId"]
    done = o.wait("no-admin", op)
    assert done["Status"] == "FAILED", done
    results = o.results("no-admin", op)
    first, second = results[(a, "us-east-1")], results[(a, "us-west-2")]
    assert first["Status"] == "FAILED" and first["StatusReason"] == admin_message(o.id), first
    assert first["AccountGateResult"] == {"Status": "FAILED", "StatusReason": admin_message(o.id)}, first
    assert second["Status"] == "CANCELLED", second
    assert second["StatusReason"] == "Cancelled since failure tolerance has exceeded", second
    instances = o.instances("no-admin")
    assert instances[(a, "us-east-1")]["Status"] == "OUTDATED", instances
    assert instances[(a, "us-east-1")]["StatusReason"] == admin_message(o.id), instances
    assert instances[(a, "us-west-2")]["StackInstanceStatus"]["DetailedStatus"] == "CANCELLED", instances
    assert all("StackId" not in i for i in instances.values()), instances
    assert not any("no-admin" in s["StackName"] for s in stack_names(o, a).values())
    ok("rule 1: missing administration role fails the operation (FAILED, then CANCELLED), instances OUTDATED")


def check_execution_role(o: Org, a: str, b: str) -> None:
    """Rule 1: execution role per target account, trusted by the administrator account."""
    cf = o.cf
    admin_trust = trust({"Service": "cloudformation.amazonaws.com"})
    o.client("iam").create_role(RoleName=ADMIN, AssumeRolePolicyDocument=admin_trust)
    o.member(a, "iam").create_role(RoleName=EXEC, AssumeRolePolicyDocument=trust({"AWS": f"arn:aws:iam::{o.id}:root"}))
    cf.create_stack_set(StackSetName="roles", TemplateBody=TEMPLATE)
    op = cf.create_stack_instances(
        StackSetName="roles",
        Accounts=[a, b],
        Regions=[REGION],
        OperationPreferences={"FailureToleranceCount": 1, "MaxConcurrentCount": 1},
    )["OperationId"]
    done = o.wait("roles", op)
    assert done["Status"] == "SUCCEEDED", done  # one failure, within the tolerance
    results = o.results("roles", op)
    assert results[(a, REGION)]["Status"] == "SUCCEEDED", results
    assert results[(b, REGION)]["Status"] == "FAILED", results
    assert results[(b, REGION)]["StatusReason"] == exec_message(b), results
    failed = cf.list_stack_set_operation_results(
        StackSetName="roles", OperationId=op, Filters=[{"Name": "OPERATION_RESULT_STATUS", "Values": "FAILED"}]
    )["Summaries"]
    assert [r["Account"] for r in failed] == [b], failed
    instances = o.instances("roles")
    assert instances[(a, REGION)]["Status"] == "CURRENT", instances
    assert instances[(a, REGION)]["StackId"] in stack_names(o, a), "the stack is in the member account"
    assert instances[(b, REGION)]["Status"] == "OUTDATED", instances
    assert instances[(b, REGION)]["StatusReason"] == exec_message(b), instances
    assert "StackId" not in instances[(b, REGION)], instances
    ok("rule 1: missing execution role fails that instance (OUTDATED, reason as AWS's); tolerance 1 -> SUCCEEDED")

    # Tolerance 0 (the default): the operation FAILS.
    op = cf.update_stack_set(StackSetName="roles", TemplateBody=TEMPLATE)["OperationId"]
    assert o.wait("roles", op)["Status"] == "FAILED"
    # A role that does not trust the administrator account is no better.
    iam_b = o.member(b, "iam")
    iam_b.create_role(RoleName=EXEC, AssumeRolePolicyDocument=trust({"AWS": "arn:aws:iam::111111111111:root"}))
    op = cf.update_stack_set(StackSetName="roles", TemplateBody=TEMPLATE)["OperationId"]
    assert o.wait("roles", op)["Status"] == "FAILED"
    assert o.results("roles", op)[(b, REGION)]["StatusReason"] == exec_message(b)
    iam_b.update_assume_role_policy(RoleName=EXEC, PolicyDocument=trust({"AWS": f"arn:aws:iam::{o.id}:root"}))
    op = cf.update_stack_set(StackSetName="roles", TemplateBody=TEMPLATE)["OperationId"]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    instances = o.instances("roles")
    assert {i["Status"] for i in instances.values()} == {"CURRENT"}, instances
    assert instances[(b, REGION)]["StackId"] in stack_names(o, b)
    ok("rule 1: default tolerance 0 -> FAILED; an untrusting role fails too; once trusted, the retry creates the stack")


def check_operations_take_time(o: Org, a: str) -> None:
    """Rule 3: RUNNING for OperationPolls polls; one operation at a time."""
    cf = o.cf
    o.emu.configure(o.id, OperationPolls=3)
    cf.create_stack_set(StackSetName="slow", TemplateBody=TEMPLATE)
    op = cf.create_stack_instances(StackSetName="slow", Accounts=[a], Regions=[REGION], OperationId="first-op")[
        "OperationId"
    ]
    assert op == "first-op"
    pending = o.instances("slow")[(a, REGION)]
    assert pending["Status"] == "OUTDATED" and pending["StackInstanceStatus"]["DetailedStatus"] == "PENDING", pending
    assert "StackId" not in pending and not any("slow" in s["StackName"] for s in stack_names(o, a).values())
    busy = [
        error_code(cf.update_stack_set, StackSetName="slow", TemplateBody=TEMPLATE),
        error_code(cf.create_stack_instances, StackSetName="slow", Accounts=[a], Regions=["us-west-2"]),
        error_code(cf.update_stack_instances, StackSetName="slow", Accounts=[a], Regions=[REGION]),
        error_code(cf.delete_stack_instances, StackSetName="slow", Accounts=[a], Regions=[REGION], RetainStacks=False),
        error_code(cf.detect_stack_set_drift, StackSetName="slow"),
        error_code(cf.delete_stack_set, StackSetName="slow"),
    ]
    assert all(code == "OperationInProgressException" for code, _ in busy), busy
    assert busy[0][1].startswith("Another operation is currently in progress for this stack set"), busy
    statuses = [
        cf.describe_stack_set_operation(StackSetName="slow", OperationId=op)["StackSetOperation"]["Status"]
        for _ in range(4)
    ]
    assert statuses == ["RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"], statuses
    instance = o.instances("slow")[(a, REGION)]
    assert instance["Status"] == "CURRENT" and instance["StackId"] in stack_names(o, a), instance
    code, _ = error_code(
        cf.create_stack_instances, StackSetName="slow", Accounts=[a], Regions=[REGION], OperationId="first-op"
    )
    assert code == "OperationIdAlreadyExistsException", code
    code, _ = error_code(cf.stop_stack_set_operation, StackSetName="slow", OperationId=op)
    assert code == "InvalidOperationException", code
    ok("rule 3: RUNNING for OperationPolls describes; OperationInProgressException meanwhile; stacks made at the end")

    # StopStackSetOperation stops a running one; its instances are left OUTDATED.
    op = cf.update_stack_set(StackSetName="slow", TemplateBody=TEMPLATE_2)["OperationId"]
    cf.stop_stack_set_operation(StackSetName="slow", OperationId=op)
    assert cf.describe_stack_set_operation(StackSetName="slow", OperationId=op)["StackSetOperation"][
        "Status"
    ] == "STOPPED"
    assert o.instances("slow")[(a, REGION)]["Status"] == "OUTDATED"
    assert o.results("slow", op)[(a, REGION)]["Status"] == "CANCELLED"
    # Nobody polls: the operation still ends in the background (ListStackSetOperations).
    o.emu.configure(o.id, OperationPolls=1000, OperationSeconds=0.1)
    op = cf.update_stack_set(StackSetName="slow", TemplateBody=TEMPLATE)["OperationId"]
    started = time.time()
    while True:
        summary = next(s for s in cf.list_stack_set_operations(StackSetName="slow")["Summaries"] if s["OperationId"] == op)
        if summary["Status"] != "RUNNING":
            break
        assert time.time() - started < 10, "operation never ended in the background"
        time.sleep(0.2)
    assert summary["Status"] == "SUCCEEDED", summary
    o.emu.configure(o.id, OperationPolls=2, OperationSeconds=0)
    ok("rule 3: StopStackSetOperation -> STOPPED; an unpolled operation completes in the background")


def check_update_targets(o: Org, a: str, b: str) -> None:
    """Rule 4: UpdateStackSet updates the stacks; naming some instances outdates the others
    when the template or parameters are given."""
    cf = o.cf
    op = cf.update_stack_set(StackSetName="roles", TemplateBody=TEMPLATE_2, Accounts=[a], Regions=[REGION])[
        "OperationId"
    ]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    instances = o.instances("roles")
    assert instances[(a, REGION)]["Status"] == "CURRENT", instances
    assert instances[(b, REGION)]["Status"] == "OUTDATED", instances
    resources_a = o.member(a, "cloudformation").list_stack_resources(StackName=instances[(a, REGION)]["StackId"])
    assert {r["LogicalResourceId"] for r in resources_a["StackResourceSummaries"]} == {"Queue", "Topic"}
    resources_b = o.member(b, "cloudformation").list_stack_resources(StackName=instances[(b, REGION)]["StackId"])
    assert {r["LogicalResourceId"] for r in resources_b["StackResourceSummaries"]} == {"Queue"}
    # No template or parameters: only the named instance changes status.
    op = cf.update_stack_set(
        StackSetName="roles", UsePreviousTemplate=True, Description="same template", Accounts=[b], Regions=[REGION]
    )["OperationId"]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    assert {i["Status"] for i in o.instances("roles").values()} == {"CURRENT"}
    resources_b = o.member(b, "cloudformation").list_stack_resources(StackName=instances[(b, REGION)]["StackId"])
    assert {r["LogicalResourceId"] for r in resources_b["StackResourceSummaries"]} == {"Queue", "Topic"}
    op = cf.update_stack_set(StackSetName="roles", UsePreviousTemplate=True, Description="again")["OperationId"]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    assert {i["Status"] for i in o.instances("roles").values()} == {"CURRENT"}
    code, _ = error_code(cf.update_stack_set, StackSetName="roles", UsePreviousTemplate=True, Accounts=[o.id], Regions=[REGION])
    assert code == "StackInstanceNotFoundException", code
    # UpdateStackInstances: overrides reach the stack.
    op = cf.update_stack_instances(
        StackSetName="roles", Accounts=[a], Regions=[REGION],
        ParameterOverrides=[{"ParameterKey": "Env", "ParameterValue": "prod"}],
    )["OperationId"]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    described = cf.describe_stack_instance(StackSetName="roles", StackInstanceAccount=a, StackInstanceRegion=REGION)
    assert described["StackInstance"]["ParameterOverrides"] == [{"ParameterKey": "Env", "ParameterValue": "prod"}]
    stack = stack_names(o, a)[instances[(a, REGION)]["StackId"]]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {"Env": "prod"}, stack
    ok("rule 4: UpdateStackSet updates the targeted stacks; a targeted template change outdates the others, "
       "a description-only one does not; UpdateStackInstances overrides reach the stack")


def check_drift(o: Org, a: str, b: str) -> None:
    """Rule 5: a stack deleted in its account makes its instance DRIFTED."""
    cf = o.cf
    stack_id = o.instances("roles")[(a, REGION)]["StackId"]
    o.member(a, "cloudformation").delete_stack(StackName=stack_id)  # someone working in account a
    op = cf.detect_stack_set_drift(StackSetName="roles")["OperationId"]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    instances = o.instances("roles")
    assert instances[(a, REGION)]["DriftStatus"] == "DRIFTED", instances
    assert "LastDriftCheckTimestamp" in instances[(a, REGION)], instances
    assert instances[(b, REGION)]["DriftStatus"] == "IN_SYNC", instances
    drifts = cf.list_stack_instance_resource_drifts(
        StackSetName="roles", StackInstanceAccount=a, StackInstanceRegion=REGION, OperationId=op,
        StackInstanceResourceDriftStatuses=["MODIFIED", "DELETED"],
    )["Summaries"]
    assert sorted((d["LogicalResourceId"], d["ResourceType"], d["StackResourceDriftStatus"]) for d in drifts) == [
        ("Queue", "AWS::SQS::Queue", "DELETED"),
        ("Topic", "AWS::SNS::Topic", "DELETED"),
    ], drifts
    none = cf.list_stack_instance_resource_drifts(
        StackSetName="roles", StackInstanceAccount=b, StackInstanceRegion=REGION, OperationId=op
    )["Summaries"]
    assert none == [], none
    details = cf.describe_stack_set(StackSetName="roles")["StackSet"]["StackSetDriftDetectionDetails"]
    assert details["DriftStatus"] == "DRIFTED" and details["DriftedStackInstancesCount"] == 1, details
    # An update recreates the stack: in sync again.
    op = cf.update_stack_set(StackSetName="roles", UsePreviousTemplate=True)["OperationId"]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    op = cf.detect_stack_set_drift(StackSetName="roles")["OperationId"]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    assert {i["DriftStatus"] for i in o.instances("roles").values()} == {"IN_SYNC"}
    ok("rule 5: a stack deleted in its account -> instance DRIFTED, its resources DELETED; others IN_SYNC")


def check_delete(o: Org, b: str) -> None:
    """Rule 1 for DeleteStackInstances: the execution role is needed unless stacks are kept."""
    cf = o.cf
    stack_id = o.instances("roles")[(b, REGION)]["StackId"]
    o.member(b, "iam").delete_role(RoleName=EXEC)
    op = cf.delete_stack_instances(StackSetName="roles", Accounts=[b], Regions=[REGION], RetainStacks=False)[
        "OperationId"
    ]
    assert o.wait("roles", op)["Status"] == "FAILED"
    instance = o.instances("roles")[(b, REGION)]
    assert instance["Status"] == "INOPERABLE" and instance["StatusReason"] == exec_message(b), instance
    # INOPERABLE instances are left out of UpdateStackSet.
    op = cf.update_stack_set(StackSetName="roles", UsePreviousTemplate=True)["OperationId"]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    assert (b, REGION) not in o.results("roles", op)
    op = cf.delete_stack_instances(StackSetName="roles", Accounts=[b], Regions=[REGION], RetainStacks=True)[
        "OperationId"
    ]
    assert o.wait("roles", op)["Status"] == "SUCCEEDED"
    assert (b, REGION) not in o.instances("roles")
    assert stack_id in stack_names(o, b), "RetainStacks keeps the stack"
    ok("rule 1: DeleteStackInstances without the execution role -> INOPERABLE; with RetainStacks it goes")


def check_service_managed(o: Org, a: str, b: str, c: str, d: str, u1: str, u2: str) -> None:
    """Rule 2: trusted access, units only, nested units, never the management account."""
    cf = o.cf
    code, message = error_code(
        cf.create_stack_set, StackSetName="org-wide", TemplateBody=TEMPLATE, PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
    )
    assert (code, message) == ("ValidationError", "You must enable organizations access to operate a service managed stack set")
    assert cf.describe_organizations_access()["Status"] == "DISABLED"
    cf.activate_organizations_access()
    assert cf.describe_organizations_access()["Status"] == "ENABLED"
    enabled = o.org.list_aws_service_access_for_organization()["EnabledServicePrincipals"]
    assert SERVICE in [s["ServicePrincipal"] for s in enabled], enabled
    code, message = error_code(
        o.member(a, "cloudformation").create_stack_set, StackSetName="from-member", TemplateBody=TEMPLATE,
        PermissionModel="SERVICE_MANAGED",
    )
    assert code == "ValidationError" and "master or delegated admin" in message, message
    cf.create_stack_set(
        StackSetName="org-wide", TemplateBody=TEMPLATE, PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
    )
    described = cf.describe_stack_set(StackSetName="org-wide")["StackSet"]
    assert described["AutoDeployment"] == {"Enabled": True, "RetainStacksOnAccountRemoval": False}, described
    assert "AdministrationRoleARN" not in described and "ExecutionRoleName" not in described, described
    only = "StackSets with SERVICE_MANAGED permission model can only have OrganizationalUnit as target"
    assert error_code(cf.create_stack_instances, StackSetName="org-wide", Accounts=[a], Regions=[REGION]) == (
        "ValidationError", only)
    assert error_code(
        cf.create_stack_instances, StackSetName="org-wide", DeploymentTargets={"Accounts": [a]}, Regions=[REGION]
    ) == ("ValidationError", only)
    code, _ = error_code(
        cf.create_stack_instances, StackSetName="org-wide",
        DeploymentTargets={"OrganizationalUnitIds": [u1], "Accounts": [a]}, Regions=[REGION],
    )
    assert code == "ValidationError"
    op = cf.create_stack_instances(
        StackSetName="org-wide", DeploymentTargets={"OrganizationalUnitIds": [u1]}, Regions=[REGION],
        OperationPreferences={"MaxConcurrentPercentage": 100},
    )["OperationId"]
    assert o.wait("org-wide", op)["Status"] == "SUCCEEDED"
    first_op = op
    instances = o.instances("org-wide")
    assert set(instances) == {(a, REGION), (b, REGION)}, instances  # b is in a unit below u1; d is closed
    assert {i["OrganizationalUnitId"] for i in instances.values()} == {u1}, instances
    assert all(i["Status"] == "CURRENT" and i["StackId"] in stack_names(o, i["Account"]) for i in instances.values())
    assert {r["OrganizationalUnitId"] for r in o.results("org-wide", op).values()} == {u1}
    # The root as target: every active member, never the management account.
    cf.create_stack_set(
        StackSetName="everyone", TemplateBody=TEMPLATE, PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": False},
    )
    op = cf.create_stack_instances(
        StackSetName="everyone", DeploymentTargets={"OrganizationalUnitIds": [o.root]}, Regions=[REGION],
        OperationPreferences={"MaxConcurrentPercentage": 100},
    )["OperationId"]
    assert o.wait("everyone", op)["Status"] == "SUCCEEDED"
    accounts = {k[0] for k in o.instances("everyone")}
    assert accounts == {a, b, c}, (accounts, o.id, d)
    # INTERSECTION and DIFFERENCE of units and accounts.
    cf.create_stack_set(StackSetName="some", TemplateBody=TEMPLATE, PermissionModel="SERVICE_MANAGED",
                        AutoDeployment={"Enabled": False})
    op = cf.create_stack_instances(
        StackSetName="some", Regions=[REGION],
        DeploymentTargets={"OrganizationalUnitIds": [o.root], "Accounts": [b], "AccountFilterType": "DIFFERENCE"},
    )["OperationId"]
    assert o.wait("some", op)["Status"] == "SUCCEEDED"
    assert {k[0] for k in o.instances("some")} == {a, c}
    ok("rule 2: trusted access needed (ActivateOrganizationsAccess); units only; nested units; "
       "no closed or management account; AccountFilterType")

    # AutoDeployment: an account moved into a targeted unit gets an instance, and loses it
    # when it leaves.
    o.move(c, u2)
    auto = [s for s in cf.list_stack_set_operations(StackSetName="org-wide")["Summaries"] if s["Action"] == "CREATE"]
    assert len(auto) == 2, auto
    auto_op = next(s["OperationId"] for s in auto if s["OperationId"] != first_op)
    o.wait("org-wide", auto_op)
    moved = o.instances("org-wide")[(c, REGION)]
    assert moved["Status"] == "CURRENT" and moved["OrganizationalUnitId"] == u1, moved
    stack_id = moved["StackId"]
    o.move(c, o.root)
    delete = next(s for s in cf.list_stack_set_operations(StackSetName="org-wide")["Summaries"] if s["Action"] == "DELETE")
    assert o.wait("org-wide", delete["OperationId"])["Status"] == "SUCCEEDED"
    assert (c, REGION) not in o.instances("org-wide")
    assert stack_id not in stack_names(o, c)
    ok("rule 2: AutoDeployment: an account moved into a targeted unit gets its instance, loses it on leaving")

    # Rule 5 through the test hook, on a service-managed instance.
    answer = o.emu.target(
        "EstateEmulator.DeleteStackInMember",
        json.dumps({"ManagementAccount": o.id, "StackSetName": "org-wide", "Account": b, "Region": REGION}).encode(),
    )
    assert answer["StackId"] == o.instances("org-wide")[(b, REGION)]["StackId"], answer
    op = cf.detect_stack_set_drift(StackSetName="org-wide")["OperationId"]
    o.wait("org-wide", op)
    drift = {k[0]: i["DriftStatus"] for k, i in o.instances("org-wide").items()}
    assert drift == {a: "IN_SYNC", b: "DRIFTED"}, drift
    ok("rule 5: EstateEmulator.DeleteStackInMember -> that instance DRIFTED")


def check_organizations_path(emu: Emulator) -> None:
    """Rule 2: trusted access enabled through Organizations also counts."""
    o = Org(emu)
    emu.configure(o.id, StrictStackSets=True)
    o.org.enable_aws_service_access(ServicePrincipal=SERVICE)
    assert o.cf.describe_organizations_access()["Status"] == "ENABLED"
    o.cf.create_stack_set(StackSetName="sm", TemplateBody=TEMPLATE, PermissionModel="SERVICE_MANAGED",
                          AutoDeployment={"Enabled": False})
    o.cf.deactivate_organizations_access()
    assert o.cf.describe_organizations_access()["Status"] == "DISABLED"
    code, message = error_code(
        o.cf.create_stack_instances, StackSetName="sm", DeploymentTargets={"OrganizationalUnitIds": [o.root]},
        Regions=[REGION],
    )
    assert (code, message) == ("ValidationError", "You must enable organizations access to operate a service managed stack set")
    ok("rule 2: EnableAWSServiceAccess also activates; DeactivateOrganizationsAccess makes operations refused")


def check_environment(env: dict[str, str]) -> None:
    emu = Emulator({**env, "ESTATE_EMULATOR_STRICT_STACKSETS": "0"})
    try:
        o = Org(emu)
        o.cf.create_stack_set(StackSetName="env", TemplateBody=TEMPLATE_NULL)
        op = o.cf.create_stack_instances(StackSetName="env", Accounts=[o.id], Regions=[REGION])["OperationId"]
        first = o.cf.describe_stack_set_operation(StackSetName="env", OperationId=op)["StackSetOperation"]
        assert first["Status"] == "SUCCEEDED", first  # moto's: at once, no role needed
    finally:
        emu.stop()
    ok("ESTATE_EMULATOR_STRICT_STACKSETS=0 turns the rules off for every organization")


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESTATE_EMULATOR_")}
    env.update({"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "check"})
    emu = Emulator(env)
    try:
        check_off(emu)
        o = Org(emu)
        emu.configure(
            o.id, StrictStackSets=True, OperationPolls=2, OperationSeconds=0,
            CreateSeconds=0, CreatePolls=0, UnreachableSeconds=0,
        )
        a, b, c, d = (o.new_account(n) for n in ("alpha", "bravo", "charlie", "delta"))
        u1 = o.unit("workloads", o.root)
        u2 = o.unit("prod", u1)
        o.move(a, u1)
        o.move(b, u2)
        o.move(d, u1)
        o.org.close_account(AccountId=d)
        check_admin_role(o, a)
        check_execution_role(o, a, b)
        check_operations_take_time(o, a)
        check_update_targets(o, a, b)
        check_drift(o, a, b)
        check_delete(o, b)
        check_service_managed(o, a, b, c, d, u1, u2)
        check_organizations_path(emu)
        check_off(emu)  # the strict organizations changed nothing for the others
    except Exception:
        traceback.print_exc()
        print(f"FAILED (emulator log: {emu.log.name})", file=sys.stderr)
        return 1
    finally:
        emu.stop()
    try:
        check_environment(env)
    except Exception:
        traceback.print_exc()
        return 1
    print("all stack-set checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Organizations and STS as AWS answers them, where moto 5.2.5 is kinder.

estate runs against AWS, not against this emulator: where moto would let a defect pass, the
emulator behaves as the AWS API reference says (each rule cites it). On by default; the
timings are configurable through the environment of the emulator process:

- ``ESTATE_EMULATOR_CREATE_SECONDS`` (default 0.4): how long a CreateAccount request stays
  IN_PROGRESS at least. AWS: "CreateAccount ... is an asynchronous request that AWS performs
  in the background ... use the Id in the response with DescribeCreateAccountStatus"
  (Organizations API reference, CreateAccount). The account is not listed (ListAccounts,
  ListAccountsForParent, DescribeAccount) until the request SUCCEEDED.
- ``ESTATE_EMULATOR_CREATE_POLLS`` (default 2): a request also answers IN_PROGRESS to at
  least this many DescribeCreateAccountStatus calls, so a client that never polls is caught;
  after ten times the delay it completes regardless (AWS finishes whether anyone asks).
- ``ESTATE_EMULATOR_UNREACHABLE_SECONDS`` (default 1.0): AssumeRole into an account created
  by CreateAccount is refused with AccessDenied for this long after it SUCCEEDED. AWS: the
  role in a new account can take minutes to become assumable (Organizations User Guide,
  "Accessing member accounts": the account's IAM resources propagate after creation).
- ``ESTATE_EMULATOR_CONCURRENT_CREATIONS`` (default 5): more creation requests IN_PROGRESS at
  once are refused with ConstraintViolationException, Reason
  ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED ("You attempted to exceed the number of accounts that
  can be in progress at a time", Organizations API reference, ConstraintViolationException;
  the quota is 5 concurrent creations, Organizations quotas).
- The first three can be set for one organization by a test: X-Amz-Target
  ``EstateEmulator.Configure`` (see ``configure``).
- ``ESTATE_EMULATOR_CLOSE_SECONDS`` (default 0.5): CloseAccount leaves the account
  PENDING_CLOSURE for this long, then SUSPENDED (API reference, CloseAccount: "the account
  status is PENDING_CLOSURE ... then SUSPENDED"); moto suspends at once.

Other rules, always on:

- Accounts carry ``State`` and no ``Status``: AWS retired ``Account.Status`` on 2026-09-09
  (API reference, Account: "The Status parameter ... will be retired on September 9, 2026";
  State: PENDING_ACTIVATION, ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED). moto returns both.
- A creation whose email is already an account's fails with FailureReason EMAIL_ALREADY_EXISTS;
  a second request with the email of one still IN_PROGRESS fails with
  CONCURRENT_ACCOUNT_MODIFICATION (API reference, CreateAccountStatus.FailureReason). AWS
  checks emails across all of AWS; here within the organization, so isolated tests may share
  example addresses.
- CreateOrganizationalUnit of a name already used by a unit under the same parent is refused
  with DuplicateOrganizationalUnitException "An OU with the same name already exists." (API
  reference, CreateOrganizationalUnit, Errors); moto creates a second one.
- MoveAccount of an account already in the destination is refused with
  DuplicateAccountException "That account is already present in the specified destination.",
  and from a source that is not the account's parent with SourceParentNotFoundException "We
  can't find a source root or OU with the ParentId that you specified." (API reference,
  MoveAccount, Errors); moto moves it regardless. A client whose answer was lost must read
  back, not trust a retry.
- AssumeRole into an account created by CreateAccount needs a role that exists there: the
  one named by CreateAccount's RoleName (default OrganizationAccountAccessRole), or one made
  later through IAM. moto hands out credentials for any ARN. Accounts that were not created
  through CreateAccount (the tests' fresh management accounts) are left as moto has them.
- A read-only role (``EstateEmulator.ReadOnlyRole`` names it, for tests of estate's
  ``readRole``): assumable in every member account, as if the organization had deployed it
  (a StackSet, as docs/iam/README.md says), and its credentials may only read: every call
  made with them that is not a read (by its operation name, or an S3 method other than GET or
  HEAD) is refused with AccessDenied, as IAM refuses an action the role's policy does not
  allow (IAM User Guide, "Policy evaluation logic": an action not explicitly allowed is
  implicitly denied). moto checks no policy at all.
- Time passing (``EstateEmulator.PassTime``, see ``pass_time``): the organization's accounts
  joined that many seconds earlier, as if the test had waited (estate treats an account
  joined in the last minutes as possibly not yet reachable).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

LOCK = threading.RLock()
# Role names that are read-only wherever assumed, and the access keys handed out for them.
READ_ONLY_ROLES: set[str] = set()
READ_ONLY_KEYS: set[str] = set()
# What a read-only role may call: the read operations' verbs (IAM's "List" and "Read" levels).
READ_VERBS = ("List", "Describe", "Get", "Search", "Head", "Scan")


def _seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


CREATE_SECONDS = _seconds("ESTATE_EMULATOR_CREATE_SECONDS", 0.4)
CREATE_POLLS = int(_seconds("ESTATE_EMULATOR_CREATE_POLLS", 2))
UNREACHABLE_SECONDS = _seconds("ESTATE_EMULATOR_UNREACHABLE_SECONDS", 1.0)
CONCURRENT_CREATIONS = int(_seconds("ESTATE_EMULATOR_CONCURRENT_CREATIONS", 5))
CLOSE_SECONDS = _seconds("ESTATE_EMULATOR_CLOSE_SECONDS", 0.5)

ORGANIZATIONS_TARGET = "AWSOrganizationsV20161128."

# Management account id -> timings overriding the defaults for its organization only, set by
# a test through the emulator's own call (X-Amz-Target EstateEmulator.Configure).
SETTINGS: dict[str, dict[str, float]] = {}


def setting(backend: Any, name: str, default: float) -> float:
    org = getattr(backend, "org", None)
    master = getattr(org, "master_account_id", None) if org is not None else None
    return float(SETTINGS.get(str(master), {}).get(name, default))


class Creation:
    """One CreateAccount request, as AWS keeps it."""

    def __init__(self, backend: Any, kwargs: dict[str, Any]) -> None:
        self.id = "car-" + uuid.uuid4().hex[:24]
        self.backend = backend
        self.kwargs = kwargs
        self.requested = time.time()
        self.completed: float | None = None
        self.polls = 0
        self.state = "IN_PROGRESS"
        self.failure_reason: str | None = None
        self.account_id: str | None = None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Id": self.id,
            "AccountName": self.kwargs.get("AccountName"),
            "State": self.state,
            "RequestedTimestamp": self.requested,
        }
        if self.completed is not None:
            out["CompletedTimestamp"] = self.completed
        if self.account_id:
            out["AccountId"] = self.account_id
        if self.failure_reason:
            out["FailureReason"] = self.failure_reason
        return out

    def due(self, now: float) -> bool:
        elapsed = now - self.requested
        seconds = setting(self.backend, "CreateSeconds", CREATE_SECONDS)
        polls = setting(self.backend, "CreatePolls", CREATE_POLLS)
        return elapsed >= seconds and (self.polls >= polls or elapsed >= 10 * seconds)


# Request id -> creation, for every organization.
CREATIONS: dict[str, Creation] = {}
# Account id -> when it became reachable (UNREACHABLE_SECONDS after it SUCCEEDED), and the
# role CreateAccount made in it.
CREATED_ACCOUNTS: dict[str, tuple[float, str]] = {}
# Account id -> when CloseAccount was called.
CLOSING: dict[str, float] = {}


def complete_due() -> None:
    """Finishes every creation and closure whose time has come (AWS works in the background)."""
    now = time.time()
    with LOCK:
        for c in list(CREATIONS.values()):
            if c.state == "IN_PROGRESS" and c.due(now):
                _finish(c, now)
        for account_id, since in list(CLOSING.items()):
            if now - since >= CLOSE_SECONDS:
                account = _account(account_id)
                if account is not None and account.state == "PENDING_CLOSURE":
                    account.state = "SUSPENDED"
                    account.status = "SUSPENDED"
                del CLOSING[account_id]


def _account(account_id: str) -> Any:
    from moto.organizations.models import organizations_backends

    for by_region in organizations_backends.values():
        for backend in by_region.values():
            for account in backend.accounts:
                if account.id == account_id:
                    return account
    return None


def _finish(c: Creation, now: float) -> None:
    email = str(c.kwargs.get("Email", "")).lower()
    existing = {str(a.email).lower() for a in c.backend.accounts}
    if c.backend.org is not None:
        existing.add(str(c.backend.org.master_account_email).lower())
    c.completed = now
    if email in existing:
        c.state, c.failure_reason = "FAILED", "EMAIL_ALREADY_EXISTS"
        return
    status = ORIGINAL_CREATE(c.backend, **c.kwargs)["CreateAccountStatus"]
    account = c.backend.get_account_by_id(status["AccountId"])
    account.create_account_status_id = c.id
    c.account_id = account.id
    c.state = "SUCCEEDED"
    CREATED_ACCOUNTS[account.id] = (
        now + setting(c.backend, "UnreachableSeconds", UNREACHABLE_SECONDS),
        c.kwargs.get("RoleName") or "OrganizationAccountAccessRole",
    )


ORIGINAL_CREATE: Any = None


def install() -> None:
    from moto.organizations import models
    from moto.organizations.exceptions import (
        AccountAlreadyClosedException,
        AccountNotFoundException,
        AWSOrganizationsNotInUseException,
        ConstraintViolationException,
        OrganizationsClientError,
    )
    from moto.sts.exceptions import STSClientError
    from moto.sts.models import STSBackend

    global ORIGINAL_CREATE
    ORIGINAL_CREATE = models.OrganizationsBackend.create_account

    original_describe = models.FakeAccount.describe

    def describe(self: Any) -> dict[str, Any]:
        out = original_describe(self)
        out.pop("Status", None)
        return out

    def create_account(self: Any, **kwargs: Any) -> dict[str, Any]:
        if self.org is None:
            raise AWSOrganizationsNotInUseException
        complete_due()
        with LOCK:
            email = str(kwargs.get("Email", "")).lower()
            pending = [
                c for c in CREATIONS.values() if c.backend is self and c.state == "IN_PROGRESS"
            ]
            if len(pending) >= CONCURRENT_CREATIONS:
                refused = ConstraintViolationException(
                    "You attempted to exceed the number of accounts that can be in progress at a time."
                )
                # AWS says why in the exception's Reason member, not in its message.
                refused.reason = "ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED"
                refused.Reason = "ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED"
                raise refused
            c = Creation(self, kwargs)
            if any(str(p.kwargs.get("Email", "")).lower() == email for p in pending):
                c.state, c.failure_reason = "FAILED", "CONCURRENT_ACCOUNT_MODIFICATION"
                c.completed = c.requested
            CREATIONS[c.id] = c
            return {"CreateAccountStatus": c.status()}

    def describe_create_account_status(self: Any, **kwargs: Any) -> dict[str, Any]:
        with LOCK:
            c = CREATIONS.get(kwargs.get("CreateAccountRequestId", ""))
            if c is None or c.backend is not self:
                raise OrganizationsClientError(
                    "CreateAccountStatusNotFoundException",
                    "We can't find an create account request with the CreateAccountRequestId that you specified.",
                )
            if c.state == "IN_PROGRESS":
                c.polls += 1
        complete_due()
        return {"CreateAccountStatus": c.status()}

    def list_create_account_status(self: Any, **kwargs: Any) -> dict[str, Any]:
        complete_due()
        wanted = kwargs.get("States") or ["IN_PROGRESS", "SUCCEEDED", "FAILED"]
        with LOCK:
            statuses = [
                c.status()
                for c in CREATIONS.values()
                if c.backend is self and c.state in wanted
            ]
        start = int(kwargs.get("NextToken") or 0)
        size = int(kwargs.get("MaxResults") or 20)
        page = statuses[start : start + size]
        out: dict[str, Any] = {"CreateAccountStatuses": page}
        if start + size < len(statuses):
            out["NextToken"] = str(start + size)
        return out

    def close_account(self: Any, **kwargs: Any) -> None:
        if self.org is None:
            raise AWSOrganizationsNotInUseException
        complete_due()
        with LOCK:
            for account in self.accounts:
                if account.id == kwargs["AccountId"]:
                    if account.state in ("PENDING_CLOSURE", "SUSPENDED", "CLOSED"):
                        raise AccountAlreadyClosedException
                    account.state = "PENDING_CLOSURE"
                    account.status = "PENDING_CLOSURE"
                    CLOSING[account.id] = time.time()
                    return
        raise AccountNotFoundException

    original_assume = STSBackend.assume_role

    def assume_role(self: Any, *args: Any, **kwargs: Any) -> Any:
        role_arn = kwargs.get("role_arn") or (args[2] if len(args) > 2 else "")
        parts = str(role_arn).split(":")
        account_id = parts[4] if len(parts) > 5 else ""
        role_name = parts[5].split("/")[-1] if len(parts) > 5 else ""
        with LOCK:
            created = CREATED_ACCOUNTS.get(account_id)
            read_only = role_name in READ_ONLY_ROLES
        if read_only:
            assumed = original_assume(self, *args, **kwargs)
            with LOCK:
                READ_ONLY_KEYS.add(assumed.access_key_id)
            return assumed
        if created is not None:
            reachable, made_role = created
            if time.time() < reachable:
                raise STSClientError(
                    "AccessDenied",
                    f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                )
            if role_name != made_role and not _iam_role_exists(account_id, role_name):
                raise STSClientError(
                    "AccessDenied",
                    f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                )
        return original_assume(self, *args, **kwargs)

    original_create_ou = models.OrganizationsBackend.create_organizational_unit

    def create_organizational_unit(self: Any, **kwargs: Any) -> dict[str, Any]:
        with LOCK:
            parent = kwargs.get("ParentId")
            if any(ou.parent_id == parent and ou.name == kwargs.get("Name") for ou in self.ou):
                raise OrganizationsClientError(
                    "DuplicateOrganizationalUnitException",
                    "An OU with the same name already exists.",
                )
            return original_create_ou(self, **kwargs)

    original_move = models.OrganizationsBackend.move_account

    def move_account(self: Any, **kwargs: Any) -> None:
        with LOCK:
            account = self.get_account_by_id(kwargs["AccountId"])
            if account.parent_id == kwargs["DestinationParentId"]:
                raise OrganizationsClientError(
                    "DuplicateAccountException",
                    "That account is already present in the specified destination.",
                )
            if account.parent_id != kwargs["SourceParentId"]:
                raise OrganizationsClientError(
                    "SourceParentNotFoundException",
                    "We can't find a source root or OU with the ParentId that you specified.",
                )
            return original_move(self, **kwargs)

    models.OrganizationsBackend.create_organizational_unit = create_organizational_unit
    models.OrganizationsBackend.move_account = move_account
    models.FakeAccount.describe = describe
    models.OrganizationsBackend.create_account = create_account
    models.OrganizationsBackend.describe_create_account_status = describe_create_account_status
    models.OrganizationsBackend.list_create_account_status = list_create_account_status
    models.OrganizationsBackend.close_account = close_account
    STSBackend.assume_role = assume_role


def _iam_role_exists(account_id: str, role_name: str) -> bool:
    from moto.iam.models import iam_backends

    try:
        iam_backends[account_id]["global"].get_role(role_name)
        return True
    except Exception:  # moto raises IAMNotFoundException
        return False


def configure(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """EstateEmulator.Configure: {"ManagementAccount": id, "CreateSeconds": s, "CreatePolls":
    n, "UnreachableSeconds": s}: timings for that organization only (tests of slow AWS).
    Also the settings of stacksets_strict.py: "StrictStackSets": true|false (kept as 1.0 or
    0.0, as every setting is a number), "OperationPolls": n, "OperationSeconds": s."""
    import json

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    master = str(body.pop("ManagementAccount"))
    values = {k: (1.0 if v else 0.0) if isinstance(v, bool) else float(v) for k, v in body.items()}
    with LOCK:
        SETTINGS.setdefault(master, {}).update(values)
    start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1")])
    return [b"{}"]


def read_only_role(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """EstateEmulator.ReadOnlyRole: {"ManagementAccount": id, "RoleName": name}: `name` is a
    read-only role in every account (see the module's docstring)."""
    import json

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    with LOCK:
        READ_ONLY_ROLES.add(str(body["RoleName"]))
    start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1")])
    return [b"{}"]


def pass_time(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """EstateEmulator.PassTime: {"ManagementAccount": id, "Seconds": s}: every account of that
    organization joined `s` seconds earlier than it did (JoinedTimestamp moves back)."""
    import datetime
    import json

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    from moto.organizations.models import organizations_backends

    management = str(body["ManagementAccount"])
    with LOCK:
        backends = organizations_backends[management].values()
        accounts = [a for b in backends if b.org is not None for a in b.accounts]
        for account in accounts:
            account.create_time -= datetime.timedelta(seconds=float(body["Seconds"]))
    start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1")])
    return [b"{}"]


def refuse_read_only_writes(environ: dict[str, Any], start_response: Any) -> list[bytes] | None:
    """AccessDenied for a call that is not a read, signed with a read-only role's keys."""
    import io
    import re
    from urllib.parse import parse_qs

    match = re.search(r"Credential=([A-Z0-9]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    with LOCK:
        if match is None or match.group(1) not in READ_ONLY_KEYS:
            return None
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        operation = target.rsplit(".", 1)[-1]
    else:
        # Query protocol (CloudFormation, STS): the action is a form field of the body.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        fields = parse_qs(body.decode("utf-8", "replace")) | parse_qs(environ.get("QUERY_STRING", ""))
        operation = (fields.get("Action") or [""])[0]
        if not operation:
            # S3's REST protocol: reads are GET and HEAD.
            operation = "Get" if environ.get("REQUEST_METHOD") in ("GET", "HEAD") else "Put"
    if operation.startswith(READ_VERBS):
        return None
    message = f"a read-only role may not call {operation}"
    if target:
        import json

        start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1")])
        return [json.dumps({"__type": "AccessDeniedException", "message": message}).encode()]
    start_response("403 Forbidden", [("Content-Type", "application/xml")])
    return [
        b'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
        b"<Code>AccessDenied</Code><Message>" + message.encode() + b"</Message></Error>"
        b"</ErrorResponse>"
    ]


def before_request(environ: dict[str, Any]) -> None:
    """Runs before every request: AWS's background work (creations, closures) moves on."""
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith(ORGANIZATIONS_TARGET):
        complete_due()

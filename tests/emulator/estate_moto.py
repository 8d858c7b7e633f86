"""AWS emulator for estate's integration tests.

Runs moto's standalone server on 127.0.0.1:<port> for one test process
(tests/it/emulator.rs starts it once per process). It prints ``READY <port>``
on stdout once the socket is listening, then sends its own stdout to stderr so
nothing blocks on a pipe the harness no longer reads.

The server must never outlive the test process that started it: it asks the
kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG, Linux) and a
thread also polls the parent pid, for other platforms and for the race where
the parent dies before prctl runs.

Calls that moto does not implement, or gets wrong, are served by handlers
registered with ``@route("<X-Amz-Target>")`` (JSON protocols) or patched into
moto's CloudFormation responses (query protocol: stack-set capabilities,
instance overrides, drift detection). S3's expected-bucket-owner header, which
moto ignores, is enforced as AWS does (403 for a bucket of another account).
Every other request goes to moto unchanged. The Service Catalog ones are in servicecatalog_ext.py (its docstring
lists them, and where they deviate from AWS). Where moto is kinder than AWS the emulator is
strict, as the AWS API reference says: Organizations and STS in organizations_strict.py (its
docstring cites each rule and the timings it takes from the environment); CloudFormation
StackSets in stacksets_strict.py, on by default (an organization opts out with
"StrictStackSets": false through EstateEmulator.Configure; ESTATE_EMULATOR_STRICT_STACKSETS=0
turns it off for all). Faults (throttling, 5xx, connection resets, lost responses) are
injected for an organization that asks for them, seeded: faults.py (EstateEmulator.Faults).

Usage: estate_moto.py PORT [--parent-pid PID]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

import faults
import organizations_strict
import servicecatalog_ext
import stacksets_strict

PR_SET_PDEATHSIG = 1
PARENT_POLL_SECONDS = 0.5

# A WSGI application: (environ, start_response) -> body chunks.
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# X-Amz-Target value (JSON-protocol services, e.g.
# "AWS242ServiceCatalogService.SomeAction") -> handler served instead of moto.
EXTRA_ROUTES: dict[str, WsgiApp] = {}


def route(target: str) -> Callable[[WsgiApp], WsgiApp]:
    """Register a WSGI handler for requests whose X-Amz-Target is `target`."""

    def register(handler: WsgiApp) -> WsgiApp:
        EXTRA_ROUTES[target] = handler
        return handler

    return register


class EstateDispatcher:
    """Sends requests with a registered X-Amz-Target to our handlers, the rest to moto."""

    def __init__(self, moto_app: WsgiApp) -> None:
        self.moto_app = moto_app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        organizations_strict.before_request(environ)
        refused = refuse_unexpected_bucket_owner(environ, start_response)
        if refused is not None:
            return refused
        refused = organizations_strict.refuse_read_only_writes(environ, start_response)
        if refused is not None:
            return refused
        handler = EXTRA_ROUTES.get(environ.get("HTTP_X_AMZ_TARGET", ""))
        if handler is not None:
            return handler(environ, start_response)
        return self.moto_app(environ, start_response)


def refuse_unexpected_bucket_owner(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes] | None:
    """S3 answers 403 AccessDenied when a request's x-amz-expected-bucket-owner is not the
    account owning the bucket; moto ignores the header. Buckets are addressed by path here
    (clients of the emulator use path style)."""
    owner = environ.get("HTTP_X_AMZ_EXPECTED_BUCKET_OWNER")
    if not owner:
        return None
    from moto.s3.models import s3_backends

    bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
    found = s3_backends.bucket_accounts.get(bucket)
    if found is None or found[1] == owner:
        return None
    start_response("403 Forbidden", [("Content-Type", "application/xml")])
    if environ.get("REQUEST_METHOD") == "HEAD":
        return [b""]
    return [
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        b"<Message>Access Denied</Message></Error>"
    ]


def keep_stack_set_capabilities() -> None:
    """moto 5.2.5 drops a stack set's Capabilities; AWS keeps those of the last
    CreateStackSet/UpdateStackSet and returns them from DescribeStackSet, which
    is what estate compares. Record them on moto's StackSet model."""
    from moto.cloudformation.responses import CloudFormationResponse

    def recording(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def action(self: Any) -> Any:
            result = original(self)
            name = self._get_param("StackSetName")
            stack_set = self.cloudformation_backend.describe_stack_set(name)
            stack_set.capabilities = self._get_param("Capabilities", [])
            return result

        return action

    CloudFormationResponse.create_stack_set = recording(CloudFormationResponse.create_stack_set)
    CloudFormationResponse.update_stack_set = recording(CloudFormationResponse.update_stack_set)


def _as_dict(parameters: Any) -> dict[str, str]:
    """moto keeps stack set parameters as {key: value} or as a list of Parameter dicts."""
    if isinstance(parameters, dict):
        return dict(parameters)
    return {
        p["ParameterKey"]: p.get("ParameterValue", "")
        for p in parameters or []
        if "ParameterKey" in p and not p.get("UsePreviousValue")
    }


def merge_instance_overrides() -> None:
    """moto 5.2.5 creates a stack instance with ParameterOverrides *instead of* the stack
    set's parameters; AWS merges them (overrides win) and reports only the overrides on the
    instance. Do what AWS does."""
    from moto.cloudformation.models import StackSet

    original = StackSet.create_stack_instances

    def create_stack_instances(self: Any, accounts: Any, regions: Any, deployment_targets: Any, parameters: Any) -> Any:
        overrides = list(parameters or [])
        merged = _as_dict(self.parameters)
        merged.update(_as_dict(overrides))
        full = [{"ParameterKey": k, "ParameterValue": v} for k, v in merged.items()]
        operation = original(self, accounts, regions, deployment_targets, full if overrides else [])
        for instance in self.instances.stack_instances:
            if instance.account_id in (accounts or []) and instance.region_name in regions:
                instance.parameters = overrides
        return operation

    StackSet.create_stack_instances = create_stack_instances


def stack_set_drift_detection() -> None:
    """moto 5.2.5 has no DetectStackSetDrift. Served here: the operation succeeds at once and
    finds every instance IN_SYNC (moto cannot change a resource behind CloudFormation's back,
    so nothing can have drifted); ListStackInstances then reports DriftStatus and
    LastDriftCheckTimestamp as AWS does (NOT_CHECKED before any detection), and
    ListStackInstanceResourceDrifts lists no drifted resource. What AWS does with DRIFTED
    instances is covered by the aws-smithy-mocks tests."""
    import uuid

    from moto.cloudformation.models import StackInstance
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow

    original = StackInstance.to_dict

    def to_dict(self: Any) -> Any:
        summary = original(self)
        summary["DriftStatus"] = getattr(self, "estate_drift_status", "NOT_CHECKED")
        checked = getattr(self, "estate_drift_checked", None)
        if checked is not None:
            summary["LastDriftCheckTimestamp"] = checked
        return summary

    def detect_stack_set_drift(self: Any) -> Any:
        stack_set = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
        operation_id = self._get_param("OperationId") or str(uuid.uuid4())
        now = utcnow()
        for instance in stack_set.instances.stack_instances:
            instance.estate_drift_status = "IN_SYNC"
            instance.estate_drift_checked = now
        stack_set._create_operation(operation_id, "DETECT_DRIFT", "SUCCEEDED")
        return ActionResult({"OperationId": operation_id})

    def list_stack_instance_resource_drifts(self: Any) -> Any:
        stack_set = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
        stack_set.get_operation(self._get_param("OperationId"))  # unknown: ValidationError
        return ActionResult({"Summaries": []})

    StackInstance.to_dict = to_dict
    CloudFormationResponse.detect_stack_set_drift = detect_stack_set_drift
    CloudFormationResponse.list_stack_instance_resource_drifts = list_stack_instance_resource_drifts


def die_with_parent(expected_parent: int) -> None:
    """Exit as soon as the process that started us is gone."""
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def poll() -> None:
        while True:
            # Re-parenting (to init or a subreaper) means the parent has died,
            # including before prctl above took effect.
            if os.getppid() != expected_parent:
                os._exit(0)
            time.sleep(PARENT_POLL_SECONDS)

    threading.Thread(target=poll, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    keep_stack_set_capabilities()
    merge_instance_overrides()
    stack_set_drift_detection()
    servicecatalog_ext.install(route)
    organizations_strict.install()
    stacksets_strict.install(route)
    route("EstateEmulator.Configure")(organizations_strict.configure)
    route("EstateEmulator.Faults")(faults.configure)
    route("EstateEmulator.FaultStats")(faults.stats)
    route("EstateEmulator.ReadOnlyRole")(organizations_strict.read_only_role)
    route("EstateEmulator.PassTime")(organizations_strict.pass_time)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="pid of the process that must outlive us (default: our parent now)",
    )
    args = parser.parse_args(argv)

    die_with_parent(args.parent_pid if args.parent_pid is not None else os.getppid())

    app = faults.wrap(EstateDispatcher(DomainDispatcherApplication(create_backend_app)))
    # Binding happens here, so a taken port fails before READY is printed.
    server = make_server(
        "127.0.0.1",
        args.port,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    print(f"READY {server.server_port}", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

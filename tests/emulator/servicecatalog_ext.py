"""Service Catalog for estate's integration tests: what moto 5.2.5 lacks or gets wrong.

moto implements only CreatePortfolio, DescribePortfolio, ListPortfolios, DeletePortfolio,
CreatePortfolioShare, DeletePortfolioShare, DescribePortfolioShares, ListPortfolioAccess,
CreateProduct, DescribeProduct and DeleteProduct; anything else answers HTTP 500. The actions in
ACTIONS are served here instead (estate_moto.py routes them by X-Amz-Target), with the shapes
and error codes of the AWS Service Catalog API reference (awsJson1_1; an error is HTTP 400 with
``{"__type": <code>, "message": ...}``).

State: portfolios, products, their tags and shares stay in moto's
``servicecatalog_backends[account][region]``, so moto's ListPortfolios, DescribeProduct and the
tagging API keep seeing them. What moto has no place for lives in one ``Catalog`` per (account,
region): provisioning artifacts, product-portfolio associations, constraints, tag options and
their associations, principals, accepted shares, share flags. The account and region are the
ones moto itself uses for the request (see ``caller``).

New: AcceptPortfolioShare, RejectPortfolioShare, ListAcceptedPortfolioShares, UpdatePortfolio,
UpdateProduct, SearchProductsAsAdmin, DescribeProductAsAdmin, Create/Update/Delete/Describe/
ListProvisioningArtifact(s), AssociateProductWithPortfolio, DisassociateProductFromPortfolio,
Create/Delete/DescribeConstraint, ListConstraintsForPortfolio, Create/Delete/ListTagOption(s),
AssociateTagOptionWithResource, DisassociateTagOptionFromResource,
Associate/DisassociatePrincipal(With|From)Portfolio, ListPrincipalsForPortfolio,
EnableAWSOrganizationsAccess, GetAWSOrganizationsAccessStatus, DescribePortfolioShareStatus,
UpdatePortfolioShare.

What shares carry to their recipients (AWS Service Catalog API Reference):
- CreatePortfolioShare / UpdatePortfolioShare, SharePrincipals: "only supported for portfolios
  with an OrganizationalNode Type of ORGANIZATION or ORGANIZATIONAL_UNIT [...] Once shared, the
  share recipient can view associations of PrincipalType: IAM_PATTERN on their portfolio":
  ListPrincipalsForPortfolio in an account the share reaches lists the owner's IAM_PATTERN
  principals beside its own; IAM ones stay the owner's. An account share with SharePrincipals
  is InvalidParametersException.
- ShareTagOptions ("Enables or disables TagOptions sharing"): DescribePortfolio in an account
  the share reaches returns the owner's tag options of the portfolio as TagOptions.
- AssociatePrincipalWithPortfolio: "a maximum of 10 Principals with a portfolio using
  PrincipalType as IAM_PATTERN" (LimitExceededException).
- UpdatePortfolioShare: "You must provide the accountId or organization node in the input,
  but not both"; a flag not given is left as it is; the share must exist
  (ResourceNotFoundException). It answers a PortfolioShareToken and a Status.

Replaced (moto's state kept, its handler not used), because moto:
- CreatePortfolio, CreateProduct: accept missing required parameters; CreateProduct drops its
  first provisioning artifact (answers ``{}``), so no version would ever be listed.
- DescribePortfolio: answers an unknown id with an empty 200, and never returns TagOptions.
- DeletePortfolio, DeleteProduct: ignore unknown ids and delete what AWS refuses to while in use
  (ResourceInUseException: a portfolio with products, principals, constraints or shares; a
  product in a portfolio).
- CreatePortfolioShare, DeletePortfolioShare: ignore unknown portfolios and shares; forget
  ShareTagOptions/SharePrincipals of account shares; share a node a second time when the flags
  differ; unshare organization nodes by substring match; allow organization-node shares from
  any account (AWS: the management account or a servicecatalog delegated administrator, after
  EnableAWSOrganizationsAccess).
- DescribePortfolioShares: reports every account share Accepted before the recipient accepted
  it, and nothing for the ORGANIZATIONAL_UNIT and ORGANIZATION_MEMBER_ACCOUNT types.
- ListPortfolioAccess: answers an unknown portfolio with an empty list.

Deviations from AWS (deliberate, or AWS's behaviour is not documented):
- Lists are paged with PageSize at most 20 (100 where the API allows), defaulting to that
  maximum; AWS's default is undocumented.
- ListPortfolios (not paged) and DescribeProduct (the end-user view, unused by estate; it lists no
  provisioning artifacts) are moto's own.
- moto's portfolio and product ids are UUIDs, and a ProductViewSummary's Id is the product id
  (AWS: ``port-``/``prod-``/``prodview-`` ids). Ours look like AWS's: ``pa-``, ``cons-``,
  ``tag-`` and 13 lowercase letters or digits.
- Templates are read from moto's S3 when a version is made from LoadTemplateFromURL (an
  https S3 URL), and a copy kept, as AWS does; one that cannot be read is refused unless
  DisableTemplateValidation. They are not validated as CloudFormation. Info must name
  exactly one of LoadTemplateFromURL and ImportFromPhysicalId; everything is AVAILABLE at
  once; IdempotencyToken is honoured only where moto does (CreatePortfolio, CreateProduct).
  DescribeProvisioningArtifact answers a presigned-style URL of the copy (on the emulator's
  host, in a bucket of account 999999999999; the signature is not checked) as
  Info.TemplateUrl, and none for a version made from ImportFromPhysicalId or from a template
  it could not read.
- A recipient sees its own principals, product associations and constraints on an imported
  portfolio, plus the owner's products, and what the shares reaching it carry (above);
  DescribePortfolio of an imported portfolio has no Tags.
  DescribeProductAsAdmin, ListProvisioningArtifacts and tag options see local products only.
- Organization-node shares, unshares and share updates run in the background, as AWS runs
  them ("CreatePortfolioShare ... is an asynchronous operation ... use
  DescribePortfolioShareStatus with the PortfolioShareToken to track progress", API reference,
  CreatePortfolioShare / DeletePortfolioShare / UpdatePortfolioShare): the first
  ``ESTATE_EMULATOR_SHARE_POLLS`` (default 1) DescribePortfolioShareStatus calls answer
  IN_PROGRESS, then COMPLETED (for a share, listing the accounts under the node as
  SuccessfulShares); a new share reaches no recipient until then, or until
  ``ESTATE_EMULATOR_SHARE_SECONDS`` (default 5) have passed, as AWS finishes whether anyone
  asks. UpdatePortfolioShare of an organization-node share answers IN_PROGRESS with the
  share's token; of an account share (whose progress AWS does not document, and whose owner need
  not be allowed DescribePortfolioShareStatus) COMPLETED at once, with a token of its own.
- UpdatePortfolioShare with neither ShareTagOptions nor SharePrincipals is
  InvalidParametersException (chosen strict: it would change nothing).
- Organization-node shares count as imported without acceptance (Accepted is always true, as
  AWS documents); ListAcceptedPortfolioShares(AWS_ORGANIZATIONS) lists the ones accepted with
  AcceptPortfolioShare(PortfolioShareType=AWS_ORGANIZATIONS). Deleting an account share
  withdraws the recipient's acceptance.
- Chosen strict where AWS is unclear: a duplicate artifact name within a product and deleting a
  product's last artifact are InvalidParametersException; disassociating a product while its
  constraints in that portfolio remain is ResourceInUseException; one LAUNCH, STACKSET and
  RESOURCE_UPDATE constraint per portfolio and product (DuplicateResourceException), LAUNCH and
  STACKSET exclusive (InvalidParametersException); an organization-node share before
  EnableAWSOrganizationsAccess is InvalidStateException; Enable/GetAWSOrganizationsAccess(Status)
  and organization-node shares from an account not allowed to are OperationNotSupportedException.
- EnableAWSOrganizationsAccess enables servicecatalog.amazonaws.com in moto's Organizations (as
  AWS does), and GetAWSOrganizationsAccessStatus reads it back from there.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any

from moto.core.exceptions import JsonRESTError, ServiceException
from moto.core.responses import BaseResponse
from moto.core.utils import unix_time, utcnow
from moto.organizations.models import OrganizationsBackend, organizations_backends
from moto.s3.models import s3_backends
from moto.servicecatalog.models import Portfolio, Product, ServiceCatalogBackend, servicecatalog_backends
from moto.utilities.utils import get_partition
from werkzeug.wrappers import Request

TARGET_PREFIX = "AWS242ServiceCatalogService."
SERVICE_PRINCIPAL = "servicecatalog.amazonaws.com"

PRODUCT_TYPES = {"CLOUD_FORMATION_TEMPLATE", "MARKETPLACE", "TERRAFORM_OPEN_SOURCE", "TERRAFORM_CLOUD", "EXTERNAL"}
ARTIFACT_TYPES = PRODUCT_TYPES - {"MARKETPLACE"} | {"MARKETPLACE_AMI", "MARKETPLACE_CAR"}
CONSTRAINT_TYPES = {"LAUNCH", "NOTIFICATION", "RESOURCE_UPDATE", "STACKSET", "TEMPLATE"}
SINGLE_CONSTRAINTS = {"LAUNCH", "STACKSET", "RESOURCE_UPDATE"}  # at most one per portfolio+product
# UpdateProduct parameter -> moto Product attribute
PRODUCT_ATTRIBUTES = {
    "Name": "name",
    "Owner": "owner",
    "Description": "description",
    "Distributor": "distributor",
    "SupportDescription": "support_description",
    "SupportEmail": "support_email",
    "SupportUrl": "support_url",
}
SHARE_TYPES = {"IMPORTED", "AWS_SERVICECATALOG", "AWS_ORGANIZATIONS"}
# DescribePortfolioShares Type -> OrganizationNode Type. Plain account shares (AccountId) are
# type ACCOUNT there and live in moto's portfolio_access, not among the node shares.
NODE_TYPES = {"ORGANIZATION": "ORGANIZATION", "ORGANIZATIONAL_UNIT": "ORGANIZATIONAL_UNIT",
              "ORGANIZATION_MEMBER_ACCOUNT": "ACCOUNT"}
PRINCIPAL_ARNS = {
    "IAM": re.compile(r"arn:aws[\w-]*:iam::\d{12}:(user|role|group)/[^*?\s]+"),
    "IAM_PATTERN": re.compile(r"arn:aws[\w-]*:iam:::(user|role|group)/\S+"),
}


class ServiceCatalogError(Exception):
    """An AWS error answer: HTTP 400, the code as ``__type``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def not_found(message: str) -> ServiceCatalogError:
    return ServiceCatalogError("ResourceNotFoundException", message)


def invalid(message: str) -> ServiceCatalogError:
    return ServiceCatalogError("InvalidParametersException", message)


def new_id(prefix: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(13))


@dataclass
class Catalog:
    """What moto cannot hold, for one account in one region."""

    # product id -> artifact id -> ProvisioningArtifactDetail, plus its "Info"
    artifacts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # portfolio id (local or imported) -> ids of the products this account associated with it
    products: dict[str, list[str]] = field(default_factory=dict)
    # constraint id -> {"Detail": ConstraintDetail, "Parameters": the JSON text as given}
    constraints: dict[str, dict[str, Any]] = field(default_factory=dict)
    # tag option id -> TagOptionDetail
    tag_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # tag option id -> ids of the portfolios and products it is associated with
    tag_option_resources: dict[str, list[str]] = field(default_factory=dict)
    # portfolio id (local or imported) -> principal ARN -> PrincipalType
    principals: dict[str, dict[str, str]] = field(default_factory=dict)
    # id of an imported portfolio -> the PortfolioShareType it was accepted as
    accepted: dict[str, str] = field(default_factory=dict)
    # (portfolio id, "ACCOUNT_SHARE" or node type, recipient) -> ShareTagOptions, SharePrincipals
    share_flags: dict[tuple[str, str, str], dict[str, bool]] = field(default_factory=dict)
    # token of an organization-node share removed by DeletePortfolioShare -> (portfolio id,
    # node value): DescribePortfolioShareStatus still answers for it, as AWS does
    unshared: dict[str, tuple[str, str]] = field(default_factory=dict)
    # token of an account share's UpdatePortfolioShare -> (portfolio id, account)
    updated: dict[str, tuple[str, str]] = field(default_factory=dict)
    # token of an organization-node share, unshare or update still running -> (status calls
    # still answering IN_PROGRESS, time it completes regardless)
    running: dict[str, tuple[int, float]] = field(default_factory=dict)
    # tokens of organization-node shares created (not updated): they reach no one while running
    new_shares: set[str] = field(default_factory=set)


SHARE_POLLS = int(os.environ.get("ESTATE_EMULATOR_SHARE_POLLS", "1"))
SHARE_SECONDS = float(os.environ.get("ESTATE_EMULATOR_SHARE_SECONDS", "5"))


def start_share_work(c: Catalog, token: str, new: bool = False) -> None:
    """A share, unshare or update of an organization node starts running (see the docstring)."""
    c.running[token] = (SHARE_POLLS, time.time() + SHARE_SECONDS)
    if new:
        c.new_shares.add(token)


def share_running(c: Catalog, token: str) -> bool:
    polls, deadline = c.running.get(token, (0, 0.0))
    return polls > 0 and time.time() < deadline


def share_arriving(c: Catalog, token: str) -> bool:
    """An organization-node share still being made: it reaches no recipient yet."""
    return token in c.new_shares and share_running(c, token)


CATALOGS: dict[tuple[str, str], Catalog] = {}
LOCK = threading.Lock()  # one action at a time: an action may touch several accounts


def catalog(account: str, region: str) -> Catalog:
    return CATALOGS.setdefault((account, region), Catalog())


def caller(request: Request) -> tuple[str, str]:
    """(account, region) of a request, resolved by moto's own BaseResponse code, so that we
    read the same backends as moto's handlers: the account from MOTO_ACCOUNT_ID, the
    x-moto-account-id header or the access key (moto.iam.models.get_account_id_from; keys
    from STS AssumeRole belong to the role's account); the region from the URL, the
    User-Agent or else the SigV4 credential scope (the only one an SDK pointed at
    127.0.0.1 sends)."""
    probe = BaseResponse(service_name="servicecatalog")
    probe.headers, probe.querystring = request.headers, {}
    return probe.get_current_account(), probe.get_region_from_url(request, request.url)


@dataclass
class Call:
    """One request: who calls, in which region, with which parameters."""

    account: str
    region: str
    params: dict[str, Any]
    # scheme://host the request came to: where URLs this emulator hands out point
    host: str = ""

    def get(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name)
        return default if value is None else value

    def required(self, name: str) -> Any:
        value = self.params.get(name)
        if value is None or value == "":
            raise invalid(f"{name} is required.")
        return value

    def backend_of(self, account: str) -> ServiceCatalogBackend:
        return servicecatalog_backends[account][self.region]

    @property
    def backend(self) -> ServiceCatalogBackend:
        return self.backend_of(self.account)

    @property
    def catalog(self) -> Catalog:
        return catalog(self.account, self.region)

    def page(self, key: str, items: list[Any], max_size: int = 20, token: str = "NextPageToken") -> dict[str, Any]:
        """One page of `items` as AWS pages them (PageToken in, `token` out)."""
        size = self.get("PageSize") or max_size
        start = self.get("PageToken", "0")
        if not isinstance(size, int) or not 0 < size <= max_size or not str(start).isdigit():
            raise invalid("Invalid PageSize or PageToken.")
        end = int(start) + size
        return {key: items[int(start):end], **({token: str(end)} if end < len(items) else {})}


Action = Callable[[Call], "dict[str, Any] | None"]
ACTIONS: dict[str, Action] = {}


def action(name: str) -> Callable[[Action], Action]:
    def register(handler: Action) -> Action:
        ACTIONS[name] = handler
        return handler

    return register


# ------------------------------------------------------------------ lookups


def local_portfolio(call: Call, portfolio_id: str) -> Portfolio:
    portfolio = call.backend.portfolios.get(portfolio_id)
    if portfolio is None:
        raise not_found(f"Portfolio {portfolio_id} not found.")
    return portfolio


def find_portfolio(region: str, portfolio_id: str) -> Portfolio | None:
    """The portfolio with this id, in whichever account owns it."""
    for account_backends in list(servicecatalog_backends.values()):
        backend = dict.get(account_backends, region)  # dict.get: do not create a backend
        if backend is not None and portfolio_id in backend.portfolios:
            return backend.portfolios[portfolio_id]
    return None


def visible_portfolio(call: Call, portfolio_id: str) -> Portfolio:
    """A local portfolio, or one imported into this account (accepted, still shared)."""
    portfolio = call.backend.portfolios.get(portfolio_id)
    share_type = call.catalog.accepted.get(portfolio_id)
    if portfolio is None and share_type is not None:
        portfolio = find_portfolio(call.region, portfolio_id)
        if portfolio is not None and not shared_with(call, portfolio, share_type):
            portfolio = None
    if portfolio is None:
        raise not_found(f"Portfolio {portfolio_id} not found.")
    return portfolio


def local_product(call: Call, product_id: str) -> Product:
    product = call.backend.products.get(product_id)
    if product is None:
        raise not_found(f"Product {product_id} not found.")
    return product


def portfolio_products(call: Call, portfolio: Portfolio) -> list[Product]:
    """The portfolio's products as the caller sees them: the owner's associations, and on an
    imported portfolio the caller's own too."""
    found = []
    for account in dict.fromkeys([portfolio.account_id, call.account]):
        products = call.backend_of(account).products
        for product_id in catalog(account, call.region).products.get(portfolio.id, []):
            if product_id in products:
                found.append(products[product_id])
    return found


def constraints_of(call: Call, portfolio_id: str, product_id: str | None = None) -> list[dict[str, Any]]:
    return [
        c["Detail"]
        for c in call.catalog.constraints.values()
        if c["Detail"]["PortfolioId"] == portfolio_id and product_id in (None, c["Detail"]["ProductId"])
    ]


def tag_option(call: Call, tag_option_id: str) -> dict[str, Any]:
    detail = call.catalog.tag_options.get(tag_option_id)
    if detail is None:
        raise not_found(f"TagOption {tag_option_id} not found.")
    return detail


def tag_options_of(call: Call, resource_id: str) -> list[dict[str, Any]]:
    resources = call.catalog.tag_option_resources
    return [detail for id, detail in call.catalog.tag_options.items() if resource_id in resources.get(id, [])]


def forget_tag_options(call: Call, resource_id: str) -> None:
    for resources in call.catalog.tag_option_resources.values():
        if resource_id in resources:
            resources.remove(resource_id)


def tags_of(backend: ServiceCatalogBackend, arn: str) -> list[dict[str, str]]:
    return backend.tagger.list_tags_for_resource(arn)["Tags"]


def retag(call: Call, resource: Portfolio | Product) -> None:
    """AddTags/RemoveTags; moto keeps tags in its tagger and a copy on the model."""
    # UpdatePortfolio, UpdateProduct (API Reference): AddTags "Array Members: Maximum number
    # of 20 items"; moto takes any number.
    if len(call.get("AddTags", [])) > 20:
        raise invalid("AddTags takes at most 20 tags.")
    call.backend.tagger.tag_resource(resource.arn, call.get("AddTags", []))
    call.backend.tagger.untag_resource_using_names(resource.arn, call.get("RemoveTags", []))
    resource.tags = tags_of(call.backend, resource.arn)


def product_view(product: Product) -> dict[str, Any]:
    """ProductViewDetail."""
    view = {
        "ProductViewSummary": {k: v for k, v in product.to_dict().items() if v is not None},
        "Status": "AVAILABLE",
        "ProductARN": product.arn,
        "CreatedTime": product.created_time,
    }
    return view | ({"SourceConnection": product.source_connection} if product.source_connection else {})


def s3_object(url: str) -> bytes | None:
    """The S3 object an ``https://…amazonaws.com`` URL names (virtual-hosted or path-style),
    from moto's S3, whichever account owns the bucket; None when there is none."""
    parts = urllib.parse.urlsplit(url)
    host, path = parts.hostname or "", urllib.parse.unquote(parts.path.lstrip("/"))
    match = re.fullmatch(r"(?:(?P<bucket>.+)\.)?s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?", host)
    if parts.scheme != "https" or not match:
        return None
    bucket, key = (match["bucket"], path) if match["bucket"] else (path.partition("/")[::2])
    owner = s3_backends.bucket_accounts.get(bucket)
    if not key or owner is None:
        return None
    partition, account = owner
    try:
        found = s3_backends[account][partition].get_object(bucket, key)
    except Exception:  # moto's MissingKey and kin: no such object
        return None
    return found.value if found is not None else None


# Service Catalog's own copies of templates, in a bucket of an account no test uses.
COPIES_ACCOUNT = "999999999999"


def copy_template(artifact_id: str, region: str, body: bytes) -> str:
    """Keeps AWS's copy of a template (a later change to the source object changes no
    version); the key of the copy in the bucket ``copies_bucket(region)``."""
    backend = s3_backends[COPIES_ACCOUNT]["aws"]
    bucket = copies_bucket(region)
    if bucket not in backend.buckets:
        backend.create_bucket(bucket, region)
    key = f"{artifact_id}.template"
    backend.put_object(bucket, key, body)
    return key


def copies_bucket(region: str) -> str:
    return f"servicecatalog-template-copies-{region}"


def artifact(properties: Any, region: str) -> dict[str, Any]:
    """A new provisioning artifact from ProvisioningArtifactProperties (not yet recorded)."""
    if not isinstance(properties, dict):
        raise invalid("Provisioning artifact parameters are required.")
    info = properties.get("Info") if isinstance(properties.get("Info"), dict) else {}
    if len([k for k in ("LoadTemplateFromURL", "ImportFromPhysicalId") if info.get(k)]) != 1:
        raise invalid("Info must contain one of LoadTemplateFromURL and ImportFromPhysicalId.")
    kind = properties.get("Type") or "CLOUD_FORMATION_TEMPLATE"
    if kind not in ARTIFACT_TYPES:
        raise invalid(f"Invalid provisioning artifact type {kind}.")
    artifact_id = new_id("pa-")
    # AWS reads the template when the version is made, and keeps a copy (API Reference,
    # ProvisioningArtifactProperties.DisableTemplateValidation: "If set to true, Service
    # Catalog stops validating the specified provisioning artifact even if it is invalid");
    # a template it cannot read is refused unless validation is disabled.
    copy = None
    if info.get("LoadTemplateFromURL"):
        body = s3_object(info["LoadTemplateFromURL"])
        if body is not None:
            copy = copy_template(artifact_id, region, body)
        elif properties.get("DisableTemplateValidation") is not True:
            raise invalid(f"Unable to read the template at {info['LoadTemplateFromURL']}.")
    return {
        "Id": artifact_id,
        "Name": properties.get("Name") or "",
        "Description": properties.get("Description") or "",
        "Type": kind,
        "CreatedTime": utcnow(),
        "Active": True,
        "Guidance": "DEFAULT",
        "Info": info,
        "Copy": copy,
    }


def record_artifact(call: Call, product_id: str, new: dict[str, Any]) -> dict[str, Any]:
    artifacts = call.catalog.artifacts.setdefault(product_id, {})
    if any(a["Name"] == new["Name"] and a["Id"] != new["Id"] for a in artifacts.values()):
        raise invalid(f"Product {product_id} already has a provisioning artifact named {new['Name']}.")
    artifacts[new["Id"]] = new
    return new


def public(artifact: dict[str, Any]) -> dict[str, Any]:
    """ProvisioningArtifactDetail: the artifact without its Info and template copy."""
    return {k: v for k, v in artifact.items() if k not in ("Info", "Copy")}


def existing_artifact(call: Call) -> dict[str, Any]:
    product = local_product(call, call.required("ProductId"))
    artifact_id = call.required("ProvisioningArtifactId")
    found = call.catalog.artifacts.get(product.id, {}).get(artifact_id)
    if found is None:
        raise not_found(f"Provisioning artifact {artifact_id} of product {product.id} not found.")
    return found


def constraint(call: Call, constraint_id: str) -> dict[str, Any]:
    found = call.catalog.constraints.get(constraint_id)
    if found is None:
        raise not_found(f"Constraint {constraint_id} not found.")
    return found


def check_constraint_parameters(kind: str, text: str) -> None:
    try:
        parameters = json.loads(text)
    except ValueError as e:
        raise invalid(f"Parameters are not valid JSON: {e}.") from None
    if not isinstance(parameters, dict):
        raise invalid("Parameters must be a JSON object.")
    roles = [parameters[k] for k in ("RoleArn", "LocalRoleName") if k in parameters]
    if kind == "LAUNCH" and not (len(roles) == 1 and isinstance(roles[0], str) and roles[0]):
        raise invalid("A LAUNCH constraint takes either RoleArn or LocalRoleName, not both.")


# ------------------------------------------------------- shares and organizations


def organization_of(call: Call, account: str) -> OrganizationsBackend | None:
    """moto's Organizations backend of the organization `account` belongs to, if any."""
    default = (account, get_partition(call.region))
    management, partition = organizations_backends.master_accounts.get(account, default)
    backend = organizations_backends[management][partition]
    return backend if backend.org is not None else None


def organization_admin(call: Call) -> OrganizationsBackend:
    """The caller's organization, if the caller may use it for Service Catalog: the management
    account, or a delegated administrator for servicecatalog.amazonaws.com."""
    org = organization_of(call, call.account)
    if org is not None and org.org is not None and (
        org.org.master_account_id == call.account
        or any(a.account.id == call.account and SERVICE_PRINCIPAL in a.services for a in org.admins)
    ):
        return org
    raise ServiceCatalogError(
        "OperationNotSupportedException",
        f"Account {call.account} is neither the management account of an organization nor a "
        "delegated administrator for Service Catalog.",
    )


def organizations_access(org: OrganizationsBackend) -> bool:
    return any(s["ServicePrincipal"] == SERVICE_PRINCIPAL for s in org.services)


def node_shares(backend: ServiceCatalogBackend, portfolio_id: str) -> Iterator[tuple[str, str, str]]:
    """(node type, node id, token) of a portfolio's organization-node shares, which moto keeps
    as tokens "share-<portfolio id>-<node type>-<node id>[-tags][-principals]"."""
    prefix = f"share-{portfolio_id}-"
    for token in backend.portfolio_share_tokens.get(portfolio_id, []):
        rest = token.removeprefix(prefix).removesuffix("-principals").removesuffix("-tags")
        kind = next((k for k in ("ORGANIZATIONAL_UNIT", "ORGANIZATION", "ACCOUNT") if rest.startswith(k + "-")), None)
        if kind is not None:
            yield kind, rest[len(kind) + 1:], token


def ancestors(org: OrganizationsBackend, account: str) -> list[str]:
    """Ids of the units and the root above `account`."""
    member = next((a for a in org.accounts if a.id == account), None)
    found, parent = [], member.parent_id if member else None
    while parent:
        found.append(parent)
        parent = next((u.parent_id for u in org.ou if u.id == parent), None)
    return found


def shared_with(call: Call, portfolio: Portfolio, share_type: str) -> bool:
    """Whether the portfolio's owner shares it with the caller in the way `share_type` names."""
    owner = call.backend_of(portfolio.account_id)
    if share_type == "IMPORTED":
        return call.account in owner.portfolio_access.get(portfolio.id, [])
    org = organization_of(call, call.account)
    if share_type != "AWS_ORGANIZATIONS" or org is None or org.org is None:
        return False
    if organization_of(call, portfolio.account_id) is not org:
        return False
    above = ancestors(org, call.account)
    running = catalog(portfolio.account_id, call.region)
    return any(
        (kind, value) in (("ORGANIZATION", org.org.id), ("ACCOUNT", call.account))
        or (kind == "ORGANIZATIONAL_UNIT" and value in above)
        for kind, value, token in node_shares(owner, portfolio.id)
        if not share_arriving(running, token)
    )


def reaching_flags(call: Call, portfolio: Portfolio) -> dict[str, bool]:
    """What the owner's shares that reach the caller carry (ShareTagOptions, SharePrincipals):
    the account share, and every organization-node share above the caller."""
    owner = call.backend_of(portfolio.account_id)
    flags = catalog(portfolio.account_id, call.region).share_flags
    reaching = []
    if call.account in owner.portfolio_access.get(portfolio.id, []):
        reaching.append(flags.get((portfolio.id, "ACCOUNT_SHARE", call.account), {}))
    org = organization_of(call, call.account)
    if org is not None and org.org is not None and organization_of(call, portfolio.account_id) is org:
        above = ancestors(org, call.account)
        for kind, value, token in node_shares(owner, portfolio.id):
            if share_arriving(catalog(portfolio.account_id, call.region), token):
                continue
            if (kind, value) in (("ORGANIZATION", org.org.id), ("ACCOUNT", call.account)) or (
                kind == "ORGANIZATIONAL_UNIT" and value in above
            ):
                reaching.append(flags.get((portfolio.id, kind, value), {}))
    return {k: any(f.get(k, False) for f in reaching) for k in ("ShareTagOptions", "SharePrincipals")}


def share_target(call: Call) -> tuple[str, str]:
    """(kind, recipient) of Create/DeletePortfolioShare: kind "ACCOUNT_SHARE" for AccountId,
    else the OrganizationNode's Type."""
    account, node = call.get("AccountId"), call.get("OrganizationNode")
    if bool(account) == bool(node):
        raise invalid("Specify exactly one of AccountId and OrganizationNode.")
    if account:
        if not re.fullmatch(r"\d{12}", account):
            raise invalid(f"Invalid AccountId {account}.")
        return "ACCOUNT_SHARE", account
    kind, value = node.get("Type"), node.get("Value")
    if kind not in ("ORGANIZATION", "ORGANIZATIONAL_UNIT", "ACCOUNT") or not value:
        raise invalid("OrganizationNode needs a Type (ORGANIZATION, ORGANIZATIONAL_UNIT or ACCOUNT) and a Value.")
    return kind, value


def share_type_of(call: Call) -> str:
    share_type = call.get("PortfolioShareType", "IMPORTED")
    if share_type not in SHARE_TYPES:
        raise invalid(f"Invalid PortfolioShareType {share_type}.")
    return share_type


# ------------------------------------------------------------------ portfolios


@action("CreatePortfolio")
def create_portfolio(call: Call) -> dict[str, Any]:
    name, provider = call.required("DisplayName"), call.required("ProviderName")
    if len(name) > 100 or len(provider) > 50:
        raise invalid("DisplayName is at most 100 characters, ProviderName at most 50.")
    detail, tags = call.backend.create_portfolio(
        accept_language=None,
        display_name=name,
        description=call.get("Description"),
        provider_name=provider,
        tags=call.get("Tags"),
        idempotency_token=call.get("IdempotencyToken"),
    )
    return {"PortfolioDetail": detail, "Tags": tags}


@action("DescribePortfolio")
def describe_portfolio(call: Call) -> dict[str, Any]:
    portfolio = visible_portfolio(call, call.required("Id"))
    local = portfolio.account_id == call.account
    if local:
        options = tag_options_of(call, portfolio.id)
    elif reaching_flags(call, portfolio)["ShareTagOptions"]:
        # The owner's tag options, as the share carries them.
        owner = Call(portfolio.account_id, call.region, {})
        options = tag_options_of(owner, portfolio.id)
    else:
        options = []
    return {
        "PortfolioDetail": portfolio.to_dict(),
        "Tags": tags_of(call.backend, portfolio.arn) if local else [],
        "TagOptions": options,
        "Budgets": [],
    }


@action("UpdatePortfolio")
def update_portfolio(call: Call) -> dict[str, Any]:
    portfolio = local_portfolio(call, call.required("Id"))
    if "DisplayName" in call.params:
        portfolio.display_name = call.required("DisplayName")
    if "ProviderName" in call.params:
        portfolio.provider_name = call.required("ProviderName")
    if call.get("Description") is not None:
        portfolio.description = call.params["Description"]
    retag(call, portfolio)
    return {"PortfolioDetail": portfolio.to_dict(), "Tags": portfolio.tags}


@action("DeletePortfolio")
def delete_portfolio(call: Call) -> None:
    portfolio = local_portfolio(call, call.required("Id"))
    pid, mine = portfolio.id, call.catalog
    if (
        mine.products.get(pid)
        or mine.principals.get(pid)
        or constraints_of(call, pid)
        or call.backend.portfolio_access.get(pid)
        or call.backend.portfolio_share_tokens.get(pid)
    ):
        raise ServiceCatalogError(
            "ResourceInUseException", f"Portfolio {pid} still has products, principals, constraints or shares."
        )
    forget_tag_options(call, pid)
    mine.products.pop(pid, None)
    mine.principals.pop(pid, None)
    call.backend.tagger.delete_all_tags_for_resource(portfolio.arn)
    call.backend.delete_portfolio(accept_language=None, id=pid)
    call.backend.portfolio_share_tokens.pop(pid, None)


# ------------------------------------------------------------------- products


@action("CreateProduct")
def create_product(call: Call) -> dict[str, Any]:
    name, owner, kind = call.required("Name"), call.required("Owner"), call.required("ProductType")
    if kind not in PRODUCT_TYPES:
        raise invalid(f"Invalid ProductType {kind}.")
    properties = call.get("ProvisioningArtifactParameters")
    if properties is None and not call.get("SourceConnection"):
        raise invalid("ProvisioningArtifactParameters is required.")
    first = artifact(properties, call.region) if properties is not None else None  # validate before creating
    product = call.backend.create_product(
        name=name,
        owner=owner,
        description=call.get("Description"),
        distributor=call.get("Distributor"),
        support_description=call.get("SupportDescription"),
        support_email=call.get("SupportEmail"),
        support_url=call.get("SupportUrl"),
        product_type=kind,
        tags=call.get("Tags", []),
        provisioning_artifact_parameters=properties,
        idempotency_token=call.get("IdempotencyToken"),
        source_connection=call.get("SourceConnection"),
    )
    # moto answers a replayed IdempotencyToken with the product made then: keep its artifact.
    made = list(call.catalog.artifacts.get(product.id, {}).values())
    if made:
        first = made[0]
    elif first is not None:
        record_artifact(call, product.id, first)
    return {
        "ProductViewDetail": product_view(product),
        "Tags": tags_of(call.backend, product.arn),
    } | ({"ProvisioningArtifactDetail": public(first)} if first else {})


@action("UpdateProduct")
def update_product(call: Call) -> dict[str, Any]:
    product = local_product(call, call.required("Id"))
    for param in ("Name", "Owner"):
        if param in call.params:
            call.required(param)
    for param, attribute in PRODUCT_ATTRIBUTES.items():
        if call.get(param) is not None:
            setattr(product, attribute, call.params[param])
    retag(call, product)
    return {"ProductViewDetail": product_view(product), "Tags": product.tags}


@action("DeleteProduct")
def delete_product(call: Call) -> None:
    product = local_product(call, call.required("Id"))
    if any(product.id in ids for ids in call.catalog.products.values()):
        raise ServiceCatalogError("ResourceInUseException", f"Product {product.id} is in a portfolio.")
    forget_tag_options(call, product.id)
    call.catalog.artifacts.pop(product.id, None)
    call.backend.tagger.delete_all_tags_for_resource(product.arn)
    call.backend.delete_product(accept_language=None, id=product.id)


def product_by(call: Call, id_param: str, name_param: str) -> Product:
    """A local product by its id, or else by its name (ResourceNotFoundException if none)."""
    if call.get(id_param):
        return local_product(call, call.params[id_param])
    found = call.backend.lookup_by_name(call.required(name_param))
    if found is None:
        raise not_found(f"Product {call.params[name_param]} not found.")
    return found


@action("DescribeProductAsAdmin")
def describe_product_as_admin(call: Call) -> dict[str, Any]:
    product = product_by(call, "Id", "Name")
    artifacts = call.catalog.artifacts.get(product.id, {}).values()
    return {
        "ProductViewDetail": product_view(product),
        "ProvisioningArtifactSummaries": [
            {k: a[k] for k in ("Id", "Name", "Description", "CreatedTime")} for a in artifacts
        ],
        "Tags": tags_of(call.backend, product.arn),
        "TagOptions": tag_options_of(call, product.id),
        "Budgets": [],
    }


@action("SearchProductsAsAdmin")
def search_products_as_admin(call: Call) -> dict[str, Any]:
    if call.get("PortfolioId"):
        products = portfolio_products(call, visible_portfolio(call, call.params["PortfolioId"]))
    else:
        products = list(call.backend.products.values())
    for key, values in call.get("Filters", {}).items():
        if key == "FullTextSearch":
            words = [v.lower() for v in values]
            products = [p for p in products if any(w in f"{p.name} {p.owner} {p.description}".lower() for w in words)]
        elif key in ("Owner", "ProductType"):
            products = [p for p in products if getattr(p, "owner" if key == "Owner" else "product_type") in values]
        else:
            raise invalid(f"Unsupported filter {key}.")
    sort_keys: dict[str, Callable[[Product], Any]] = {
        "Title": lambda p: p.name,
        "CreationDate": lambda p: p.created_time,
        "VersionCount": lambda p: len(catalog(p.account_id, call.region).artifacts.get(p.id, {})),
    }
    sort_by = call.get("SortBy", "CreationDate")
    if sort_by not in sort_keys:
        raise invalid(f"Invalid SortBy {sort_by}.")
    products.sort(key=sort_keys[sort_by], reverse=call.get("SortOrder") == "DESCENDING")
    return call.page("ProductViewDetails", [product_view(p) for p in products])


# ----------------------------------------------------- provisioning artifacts


@action("CreateProvisioningArtifact")
def create_provisioning_artifact(call: Call) -> dict[str, Any]:
    product = local_product(call, call.required("ProductId"))
    new = record_artifact(call, product.id, artifact(call.required("Parameters"), call.region))
    return {"ProvisioningArtifactDetail": public(new), "Info": new["Info"], "Status": "AVAILABLE"}


@action("UpdateProvisioningArtifact")
def update_provisioning_artifact(call: Call) -> dict[str, Any]:
    found = existing_artifact(call)
    if call.get("Guidance", "DEFAULT") not in ("DEFAULT", "DEPRECATED"):
        raise invalid(f"Invalid Guidance {call.params['Guidance']}.")
    if not isinstance(call.get("Active", True), bool):
        raise invalid("Active must be a boolean.")
    if call.get("Name") is not None:
        found = record_artifact(call, call.params["ProductId"], found | {"Name": call.params["Name"]})
    for param in ("Description", "Active", "Guidance"):
        if call.get(param) is not None:
            found[param] = call.params[param]
    return {"ProvisioningArtifactDetail": public(found), "Info": found["Info"], "Status": "AVAILABLE"}


@action("DeleteProvisioningArtifact")
def delete_provisioning_artifact(call: Call) -> None:
    found = existing_artifact(call)
    artifacts = call.catalog.artifacts[call.params["ProductId"]]
    if len(artifacts) == 1:
        raise invalid("A product must keep at least one provisioning artifact.")
    del artifacts[found["Id"]]


@action("DescribeProvisioningArtifact")
def describe_provisioning_artifact(call: Call) -> dict[str, Any]:
    # AWS Service Catalog API Reference, DescribeProvisioningArtifact: the product by ProductId
    # or ProductName, the artifact by ProvisioningArtifactId or ProvisioningArtifactName;
    # ResourceNotFoundException when either is unknown. Info holds the template's URL as
    # "TemplateUrl" (the key the SDKs' users read): a presigned URL of the copy AWS keeps.
    product = product_by(call, "ProductId", "ProductName")
    artifacts = call.catalog.artifacts.get(product.id, {})
    if call.get("ProvisioningArtifactId"):
        found_artifact = artifacts.get(call.params["ProvisioningArtifactId"])
    else:
        name = call.required("ProvisioningArtifactName")
        found_artifact = next((a for a in artifacts.values() if a["Name"] == name), None)
    if found_artifact is None:
        raise not_found(f"Provisioning artifact not found in product {product.id}.")
    info = {}
    if found_artifact.get("Copy"):
        # A URL of AWS's copy, presigned: its holder reads it without rights of its own.
        query = urllib.parse.urlencode({
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"AKIAEMULATOR/20260101/{call.region}/s3/aws4_request",
            "X-Amz-Date": "20260101T000000Z",
            "X-Amz-Expires": "3600",
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": secrets.token_hex(32),
        })
        info["TemplateUrl"] = f"{call.host}/{copies_bucket(call.region)}/{found_artifact['Copy']}?{query}"
    return {
        "ProvisioningArtifactDetail": public(found_artifact),
        "Info": info,
        "Status": "AVAILABLE",
    }


@action("ListProvisioningArtifacts")
def list_provisioning_artifacts(call: Call) -> dict[str, Any]:
    product = local_product(call, call.required("ProductId"))
    return {"ProvisioningArtifactDetails": [public(a) for a in call.catalog.artifacts.get(product.id, {}).values()]}


# -------------------------------------------------- product-portfolio associations


@action("AssociateProductWithPortfolio")
def associate_product_with_portfolio(call: Call) -> None:
    portfolio = visible_portfolio(call, call.required("PortfolioId"))
    product = local_product(call, call.required("ProductId"))
    if call.get("SourcePortfolioId"):
        visible_portfolio(call, call.params["SourcePortfolioId"])
    associated = call.catalog.products.setdefault(portfolio.id, [])
    if product.id not in associated:
        associated.append(product.id)


@action("DisassociateProductFromPortfolio")
def disassociate_product_from_portfolio(call: Call) -> None:
    portfolio = visible_portfolio(call, call.required("PortfolioId"))
    product_id = call.required("ProductId")
    associated = call.catalog.products.get(portfolio.id, [])
    if product_id not in associated:
        raise not_found(f"Product {product_id} is not in portfolio {portfolio.id}.")
    if constraints_of(call, portfolio.id, product_id):
        raise ServiceCatalogError(
            "ResourceInUseException", f"Product {product_id} has constraints in portfolio {portfolio.id}."
        )
    associated.remove(product_id)


# ------------------------------------------------------------------ constraints


@action("CreateConstraint")
def create_constraint(call: Call) -> dict[str, Any]:
    portfolio = visible_portfolio(call, call.required("PortfolioId"))
    product_id = call.required("ProductId")
    if product_id not in [p.id for p in portfolio_products(call, portfolio)]:
        raise not_found(f"Product {product_id} is not in portfolio {portfolio.id}.")
    kind, text = call.required("Type"), call.required("Parameters")
    if kind not in CONSTRAINT_TYPES:
        raise invalid(f"Invalid constraint type {kind}.")
    check_constraint_parameters(kind, text)
    present = {c["Type"] for c in constraints_of(call, portfolio.id, product_id)}
    if kind in SINGLE_CONSTRAINTS & present:
        raise ServiceCatalogError(
            "DuplicateResourceException", f"Product {product_id} already has a {kind} constraint in {portfolio.id}."
        )
    if {"LAUNCH", "STACKSET"} <= present | {kind}:
        raise invalid("A product cannot have both a LAUNCH and a STACKSET constraint in a portfolio.")
    detail = {
        "ConstraintId": new_id("cons-"),
        "Type": kind,
        "Description": call.get("Description", ""),
        "Owner": call.account,
        "ProductId": product_id,
        "PortfolioId": portfolio.id,
    }
    call.catalog.constraints[detail["ConstraintId"]] = {"Detail": detail, "Parameters": text}
    return {"ConstraintDetail": detail, "ConstraintParameters": text, "Status": "AVAILABLE"}


@action("DescribeConstraint")
def describe_constraint(call: Call) -> dict[str, Any]:
    found = constraint(call, call.required("Id"))
    return {"ConstraintDetail": found["Detail"], "ConstraintParameters": found["Parameters"], "Status": "AVAILABLE"}


@action("DeleteConstraint")
def delete_constraint(call: Call) -> None:
    del call.catalog.constraints[constraint(call, call.required("Id"))["Detail"]["ConstraintId"]]


@action("ListConstraintsForPortfolio")
def list_constraints_for_portfolio(call: Call) -> dict[str, Any]:
    portfolio = visible_portfolio(call, call.required("PortfolioId"))
    return call.page("ConstraintDetails", constraints_of(call, portfolio.id, call.get("ProductId")))


# ------------------------------------------------------------------ tag options


@action("CreateTagOption")
def create_tag_option(call: Call) -> dict[str, Any]:
    key, value = call.required("Key"), call.required("Value")
    if len(key) > 128 or len(value) > 256:
        raise invalid("Key is at most 128 characters, Value at most 256.")
    if any((o["Key"], o["Value"]) == (key, value) for o in call.catalog.tag_options.values()):
        raise ServiceCatalogError("DuplicateResourceException", f"TagOption {key}={value} already exists.")
    detail = {"Key": key, "Value": value, "Active": True, "Id": new_id("tag-"), "Owner": call.account}
    call.catalog.tag_options[detail["Id"]] = detail
    return {"TagOptionDetail": detail}


@action("DeleteTagOption")
def delete_tag_option(call: Call) -> None:
    detail = tag_option(call, call.required("Id"))
    if call.catalog.tag_option_resources.get(detail["Id"]):
        raise ServiceCatalogError("ResourceInUseException", f"TagOption {detail['Id']} is associated with a resource.")
    del call.catalog.tag_options[detail["Id"]]
    call.catalog.tag_option_resources.pop(detail["Id"], None)


@action("ListTagOptions")
def list_tag_options(call: Call) -> dict[str, Any]:
    filters = call.get("Filters", {})
    options = [
        o for o in call.catalog.tag_options.values()
        if all(filters.get(k) is None or filters[k] == o[k] for k in ("Key", "Value", "Active"))
    ]
    return call.page("TagOptionDetails", options, token="PageToken")


@action("AssociateTagOptionWithResource")
def associate_tag_option_with_resource(call: Call) -> None:
    resource_id = call.required("ResourceId")
    if resource_id not in call.backend.portfolios and resource_id not in call.backend.products:
        raise not_found(f"Resource {resource_id} not found.")
    detail = tag_option(call, call.required("TagOptionId"))
    if not detail["Active"]:
        raise ServiceCatalogError("InvalidStateException", f"TagOption {detail['Id']} is not active.")
    resources = call.catalog.tag_option_resources.setdefault(detail["Id"], [])
    if resource_id in resources:
        raise ServiceCatalogError("DuplicateResourceException", f"{detail['Id']} is already on {resource_id}.")
    resources.append(resource_id)


@action("DisassociateTagOptionFromResource")
def disassociate_tag_option_from_resource(call: Call) -> None:
    resource_id = call.required("ResourceId")
    detail = tag_option(call, call.required("TagOptionId"))
    resources = call.catalog.tag_option_resources.get(detail["Id"], [])
    if resource_id not in resources:
        raise not_found(f"TagOption {detail['Id']} is not associated with {resource_id}.")
    resources.remove(resource_id)


# ------------------------------------------------------------------ principals


@action("AssociatePrincipalWithPortfolio")
def associate_principal_with_portfolio(call: Call) -> None:
    portfolio = visible_portfolio(call, call.required("PortfolioId"))
    arn, kind = call.required("PrincipalARN"), call.required("PrincipalType")
    if kind not in PRINCIPAL_ARNS:
        raise invalid(f"Invalid PrincipalType {kind}.")
    if not PRINCIPAL_ARNS[kind].fullmatch(arn):
        raise invalid(f"{arn} is not a principal ARN of type {kind}.")
    principals = call.catalog.principals.setdefault(portfolio.id, {})
    patterns = [a for a, k in principals.items() if k == "IAM_PATTERN" and a != arn]
    if kind == "IAM_PATTERN" and len(patterns) >= 10:
        raise ServiceCatalogError(
            "LimitExceededException", f"Portfolio {portfolio.id} has 10 IAM_PATTERN principals already."
        )
    principals[arn] = kind


@action("DisassociatePrincipalFromPortfolio")
def disassociate_principal_from_portfolio(call: Call) -> None:
    portfolio = visible_portfolio(call, call.required("PortfolioId"))
    arn, kind = call.required("PrincipalARN"), call.get("PrincipalType", "IAM")
    principals = call.catalog.principals.get(portfolio.id, {})
    if principals.get(arn) != kind:
        raise not_found(f"Principal {arn} ({kind}) is not associated with portfolio {portfolio.id}.")
    del principals[arn]


@action("ListPrincipalsForPortfolio")
def list_principals_for_portfolio(call: Call) -> dict[str, Any]:
    portfolio = visible_portfolio(call, call.required("PortfolioId"))
    principals = dict(call.catalog.principals.get(portfolio.id, {}))
    if portfolio.account_id != call.account and reaching_flags(call, portfolio)["SharePrincipals"]:
        # The owner's name patterns, as a share with SharePrincipals carries them.
        owner = catalog(portfolio.account_id, call.region).principals.get(portfolio.id, {})
        principals |= {a: k for a, k in owner.items() if k == "IAM_PATTERN"}
    return call.page("Principals", [{"PrincipalARN": a, "PrincipalType": k} for a, k in principals.items()])


# ---------------------------------------------------------- shares, owner side


@action("CreatePortfolioShare")
def create_portfolio_share(call: Call) -> dict[str, Any]:
    portfolio = local_portfolio(call, call.required("PortfolioId"))
    kind, recipient = share_target(call)
    flags = {"ShareTagOptions": bool(call.get("ShareTagOptions")), "SharePrincipals": bool(call.get("SharePrincipals"))}
    if kind == "ACCOUNT_SHARE":
        if recipient == call.account:
            raise invalid("A portfolio cannot be shared with its own account.")
        if flags["SharePrincipals"]:
            raise invalid("SharePrincipals is only supported for ORGANIZATION and ORGANIZATIONAL_UNIT shares.")
        if recipient in call.backend.portfolio_access.get(portfolio.id, []):
            return {}  # AWS: sharing again has no effect
    else:
        org = organization_admin(call)
        assert org.org is not None
        if not organizations_access(org):
            raise ServiceCatalogError("InvalidStateException", "Call EnableAWSOrganizationsAccess first.")
        if not (
            (kind == "ORGANIZATION" and recipient == org.org.id)
            or (kind == "ORGANIZATIONAL_UNIT" and any(u.id == recipient for u in org.ou))
            or (kind == "ACCOUNT" and any(a.id == recipient for a in org.accounts))
        ):
            raise invalid(f"{kind} {recipient} is not in organization {org.org.id}.")
        token = next((t for k, v, t in node_shares(call.backend, portfolio.id) if (k, v) == (kind, recipient)), None)
        if token is not None:
            return {"PortfolioShareToken": token}  # AWS: sharing again has no effect
    token = call.backend.create_portfolio_share(
        accept_language=None,
        portfolio_id=portfolio.id,
        account_id=recipient if kind == "ACCOUNT_SHARE" else None,
        organization_node=None if kind == "ACCOUNT_SHARE" else {"Type": kind, "Value": recipient},
        share_tag_options=flags["ShareTagOptions"],
        share_principals=flags["SharePrincipals"],
    )
    call.catalog.share_flags[(portfolio.id, kind, recipient)] = flags
    if token:
        start_share_work(call.catalog, token, new=True)
    return {"PortfolioShareToken": token} if token else {}


@action("DeletePortfolioShare")
def delete_portfolio_share(call: Call) -> dict[str, Any]:
    portfolio = local_portfolio(call, call.required("PortfolioId"))
    kind, recipient = share_target(call)
    if kind == "ACCOUNT_SHARE":
        accounts = call.backend.portfolio_access.get(portfolio.id, [])
        if recipient not in accounts:
            raise not_found(f"Portfolio {portfolio.id} is not shared with account {recipient}.")
        accounts.remove(recipient)
        accepted = catalog(recipient, call.region).accepted
        if accepted.get(portfolio.id) == "IMPORTED":
            del accepted[portfolio.id]
        token = None
    else:
        organization_admin(call)
        token = next((t for k, v, t in node_shares(call.backend, portfolio.id) if (k, v) == (kind, recipient)), None)
        if token is None:
            raise not_found(f"Portfolio {portfolio.id} is not shared with {kind} {recipient}.")
        call.backend.portfolio_share_tokens[portfolio.id].remove(token)
        call.catalog.unshared[token] = (portfolio.id, recipient)
        start_share_work(call.catalog, token)
    call.catalog.share_flags.pop((portfolio.id, kind, recipient), None)
    return {"PortfolioShareToken": token} if token else {}


@action("UpdatePortfolioShare")
def update_portfolio_share(call: Call) -> dict[str, Any]:
    portfolio = local_portfolio(call, call.required("PortfolioId"))
    kind, recipient = share_target(call)
    given = {k: call.params[k] for k in ("ShareTagOptions", "SharePrincipals") if call.params.get(k) is not None}
    if not given:
        raise invalid("Give ShareTagOptions or SharePrincipals.")
    if kind == "ACCOUNT_SHARE":
        if recipient not in call.backend.portfolio_access.get(portfolio.id, []):
            raise not_found(f"Portfolio {portfolio.id} is not shared with account {recipient}.")
        if given.get("SharePrincipals"):
            raise invalid("SharePrincipals is only supported for ORGANIZATION and ORGANIZATIONAL_UNIT shares.")
        token = new_id("share-")
        call.catalog.updated[token] = (portfolio.id, recipient)
        status = "COMPLETED"
    else:
        organization_admin(call)
        token = next((t for k, v, t in node_shares(call.backend, portfolio.id) if (k, v) == (kind, recipient)), None)
        if token is None:
            raise not_found(f"Portfolio {portfolio.id} is not shared with {kind} {recipient}.")
        status = "IN_PROGRESS"
        start_share_work(call.catalog, token)
    flags = call.catalog.share_flags.setdefault(
        (portfolio.id, kind, recipient), {"ShareTagOptions": False, "SharePrincipals": False}
    )
    flags.update({k: bool(v) for k, v in given.items()})
    return {"PortfolioShareToken": token, "Status": status}


@action("DescribePortfolioShares")
def describe_portfolio_shares(call: Call) -> dict[str, Any]:
    portfolio = local_portfolio(call, call.required("PortfolioId"))
    share_type = call.required("Type")
    flags = call.catalog.share_flags
    no_flags = {"ShareTagOptions": False, "SharePrincipals": False}
    if share_type == "ACCOUNT":
        details = [
            {
                "PrincipalId": account,
                "Type": "ACCOUNT",
                "Accepted": catalog(account, call.region).accepted.get(portfolio.id) == "IMPORTED",
                **flags.get((portfolio.id, "ACCOUNT_SHARE", account), no_flags),
            }
            for account in call.backend.portfolio_access.get(portfolio.id, [])
        ]
    elif share_type in NODE_TYPES:
        details = [
            {"PrincipalId": value, "Type": share_type, "Accepted": True,
             **flags.get((portfolio.id, kind, value), no_flags)}
            for kind, value, _ in node_shares(call.backend, portfolio.id)
            if kind == NODE_TYPES[share_type]
        ]
    else:
        raise invalid(f"Invalid Type {share_type}.")
    return call.page("PortfolioShareDetails", details, max_size=100)


@action("DescribePortfolioShareStatus")
def describe_portfolio_share_status(call: Call) -> dict[str, Any]:
    token = call.required("PortfolioShareToken")
    answer = share_status(call, token)
    if share_running(call.catalog, token):
        polls, deadline = call.catalog.running[token]
        call.catalog.running[token] = (polls - 1, deadline)
        answer["Status"] = "IN_PROGRESS"
        answer["ShareDetails"] = {"SuccessfulShares": [], "ShareErrors": []}
    return answer


def share_status(call: Call, token: str) -> dict[str, Any]:
    """DescribePortfolioShareStatus's answer once the work of `token` is done."""
    for portfolio_id in list(call.backend.portfolio_share_tokens):
        for kind, value, t in node_shares(call.backend, portfolio_id):
            if t != token:
                continue
            org = organization_admin(call)
            if kind == "ORGANIZATION":
                accounts = [a.id for a in org.accounts]
            elif kind == "ORGANIZATIONAL_UNIT":
                accounts = [a.id for a in org.accounts if value in ancestors(org, a.id)]
            else:
                accounts = [value]
            return {
                "PortfolioShareToken": token,
                "PortfolioId": portfolio_id,
                "OrganizationNodeValue": value,
                "Status": "COMPLETED",
                "ShareDetails": {"SuccessfulShares": sorted(accounts), "ShareErrors": []},
            }
    if token in call.catalog.updated:
        organization_admin(call)
        portfolio_id, account = call.catalog.updated[token]
        return {
            "PortfolioShareToken": token,
            "PortfolioId": portfolio_id,
            "OrganizationNodeValue": account,
            "Status": "COMPLETED",
            "ShareDetails": {"SuccessfulShares": [account], "ShareErrors": []},
        }
    if token in call.catalog.unshared:
        portfolio_id, value = call.catalog.unshared[token]
        return {
            "PortfolioShareToken": token,
            "PortfolioId": portfolio_id,
            "OrganizationNodeValue": value,
            "Status": "COMPLETED",
            "ShareDetails": {"SuccessfulShares": [], "ShareErrors": []},
        }
    raise not_found(f"Portfolio share token {token} not found.")


@action("ListPortfolioAccess")
def list_portfolio_access(call: Call) -> dict[str, Any]:
    portfolio = local_portfolio(call, call.required("PortfolioId"))
    return call.page("AccountIds", list(call.backend.portfolio_access.get(portfolio.id, [])), max_size=100)


# ------------------------------------------------------ shares, recipient side


@action("AcceptPortfolioShare")
def accept_portfolio_share(call: Call) -> None:
    portfolio_id, share_type = call.required("PortfolioId"), share_type_of(call)
    portfolio = find_portfolio(call.region, portfolio_id)
    if portfolio is None or portfolio.account_id == call.account or not shared_with(call, portfolio, share_type):
        raise not_found(f"Portfolio {portfolio_id} is not shared with account {call.account} ({share_type}).")
    call.catalog.accepted[portfolio_id] = share_type


@action("RejectPortfolioShare")
def reject_portfolio_share(call: Call) -> None:
    portfolio_id, share_type = call.required("PortfolioId"), share_type_of(call)
    portfolio = find_portfolio(call.region, portfolio_id)
    if portfolio is None or not (
        call.catalog.accepted.get(portfolio_id) == share_type or shared_with(call, portfolio, share_type)
    ):
        raise not_found(f"Portfolio {portfolio_id} is not shared with account {call.account} ({share_type}).")
    call.catalog.accepted.pop(portfolio_id, None)


@action("ListAcceptedPortfolioShares")
def list_accepted_portfolio_shares(call: Call) -> dict[str, Any]:
    share_type = share_type_of(call)
    details = []
    for portfolio_id, accepted_as in call.catalog.accepted.items():
        portfolio = find_portfolio(call.region, portfolio_id) if accepted_as == share_type else None
        if portfolio is not None and shared_with(call, portfolio, share_type):
            details.append(portfolio.to_dict())
    return call.page("PortfolioDetails", details, max_size=100)


# ---------------------------------------------------------------- organizations


@action("EnableAWSOrganizationsAccess")
def enable_aws_organizations_access(call: Call) -> None:
    org = organization_admin(call)
    if org.org is None or org.org.master_account_id != call.account:
        raise ServiceCatalogError(
            "OperationNotSupportedException", "Only the management account can enable AWS Organizations access."
        )
    org.enable_aws_service_access(ServicePrincipal=SERVICE_PRINCIPAL)


@action("GetAWSOrganizationsAccessStatus")
def get_aws_organizations_access_status(call: Call) -> dict[str, Any]:
    return {"AccessStatus": "ENABLED" if organizations_access(organization_admin(call)) else "DISABLED"}


# ------------------------------------------------------------------------ WSGI


def json_value(value: Any) -> Any:
    """JSON-protocol timestamps are epoch seconds; moto's datetimes are naive UTC."""
    if isinstance(value, datetime):
        return unix_time(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI handler of every action in ACTIONS."""
    request = Request(environ)
    name = environ.get("HTTP_X_AMZ_TARGET", "").removeprefix(TARGET_PREFIX)
    account, region = caller(request)
    status, body = 200, {}
    try:
        try:
            params = json.loads(request.get_data() or b"{}")
        except ValueError:
            params = None
        if not isinstance(params, dict):
            raise invalid("The request body is not a JSON object.")
        with LOCK:
            body = ACTIONS[name](Call(account, region, params, request.host_url.rstrip("/"))) or {}
    except ServiceCatalogError as e:
        status, body = 400, {"__type": e.code, "message": e.message}
    except JsonRESTError as e:  # from a moto backend we called
        status, body = e.code, {"__type": e.error_type, "message": e.message}
    except ServiceException as e:
        status, body = 400, {"__type": e.code, "message": e.message}
    data = json.dumps(body, default=json_value).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [data]


def install(route: Callable[[str], Callable[[Any], Any]]) -> None:
    """Register every action with estate_moto's ``route``."""
    for name in ACTIONS:
        route(TARGET_PREFIX + name)(serve)

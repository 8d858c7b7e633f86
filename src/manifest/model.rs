//! The manifest's typed model: one struct per kind, the single source of both the loader and
//! the published JSON Schema (schemars derives the schema from these types).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "estate/v1";

/// `metadata` of every document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique within its kind; used in AWS names, so letters, digits and dashes.
    #[schemars(regex(pattern = r"^[a-zA-Z][-a-zA-Z0-9]{0,63}$"))]
    pub name: String,
}

/// A CloudFormation parameter value: YAML scalars are accepted and passed on as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[schemars(transparent)]
pub struct ParamValue(#[schemars(with = "ScalarSchema")] pub String);

/// Schema stand-in for [`ParamValue`]: a string, number or boolean.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ScalarSchema {
    S(String),
    N(f64),
    B(bool),
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(ParamValue(s)),
            serde_json::Value::Number(n) => Ok(ParamValue(n.to_string())),
            serde_json::Value::Bool(b) => Ok(ParamValue(b.to_string())),
            // Never the value itself: it may be a NoEcho parameter's.
            _ => Err(serde::de::Error::custom(
                "expected a string, number or boolean",
            )),
        }
    }
}

pub type Parameters = BTreeMap<String, ParamValue>;

// ---------------------------------------------------------------- Estate

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EstateSpec {
    /// Region where stack sets and portfolios are administered.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-\d$"))]
    pub home_region: String,
    /// Default regions for stack instances.
    #[schemars(length(min = 1), inner(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-\d$")))]
    pub regions: Vec<String>,
    /// Role assumed in member accounts for reads and writes there.
    #[serde(default = "default_member_role")]
    #[schemars(regex(pattern = r"^[\w+=,.@/-]{1,512}$"))]
    pub member_role: String,
    /// Role assumed in member accounts by `plan` and `drift` (and `watch`), which only read:
    /// a read-only role (docs/iam/read-role-policy.json) distinct from `memberRole`, which
    /// `apply` and `reconcile` use. Default: `memberRole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[\w+=,.@/-]{1,512}$"))]
    pub read_role: Option<String>,
    /// The promotion stages (environment names), in order.
    #[serde(default)]
    pub promotion: Vec<String>,
    /// Delete managed resources that left the manifest (otherwise they are reported as orphans).
    #[serde(default)]
    pub prune: bool,
    /// Globs, relative to estate.yaml, of the files holding the other documents.
    #[serde(default)]
    pub include: Vec<String>,
    /// S3 bucket in the home region for templates over 51,200 bytes; default
    /// `estate-templates-<management account id>-<home region>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub template_bucket: Option<String>,
    /// Who provides the roles self-managed stack sets need (the administration role where
    /// estate runs, the execution role in every target account): `bootstrap` (estate creates
    /// what is missing) or `existing` (the organization manages them).
    #[serde(default)]
    pub stack_set_roles: StackSetRoles,
    /// What of the organization this estate is concerned with; absent: all of it (a
    /// greenfield organization). Accounts and stack sets outside are neither findings nor
    /// changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// The part of an existing organization an estate owns: the rest is someone else's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scope {
    /// Units, recursively: accounts outside them that the manifest does not name are not
    /// reported as unmanaged, and their stack instances are left alone. Empty: every unit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^/([^/\s][^/]{0,127}(/[^/\s][^/]{0,127})*)?$")))]
    pub units: Vec<String>,
    /// AWS stack set names this estate may own, as patterns (`*` stands for any characters):
    /// its stack sets outside them are not reported as orphans. Empty: every name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^[-a-zA-Z0-9*]{1,128}$")))]
    pub stack_sets: Vec<String>,
}

impl Scope {
    /// Whether a unit path is one of the scope's units or below one (every unit when none).
    pub fn has_unit(&self, path: &str) -> bool {
        self.units.is_empty()
            || self.units.iter().any(|u| {
                u == "/"
                    || path == u
                    || path
                        .strip_prefix(u.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
    }

    /// Whether an AWS stack set name matches one of the scope's patterns (every name when none).
    pub fn has_stack_set(&self, name: &str) -> bool {
        self.stack_sets.is_empty() || self.stack_sets.iter().any(|p| glob_match(p, name))
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(mut tail) = text.strip_prefix(head) else {
                return false;
            };
            loop {
                if glob_match(rest, tail) {
                    return true;
                }
                let mut chars = tail.chars();
                if chars.next().is_none() {
                    return false;
                }
                tail = chars.as_str();
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StackSetRoles {
    #[default]
    Bootstrap,
    Existing,
}

fn default_member_role() -> String {
    "OrganizationAccountAccessRole".into()
}

// ---------------------------------------------------------------- Organization

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrganizationSpec {
    /// The OU tree by path; a parent must be listed before its children.
    #[serde(default)]
    pub units: Vec<Unit>,
    #[serde(default)]
    pub accounts: Vec<Account>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Unit {
    /// `/parent/child`; the root `/` is implicit.
    #[schemars(regex(pattern = r"^(/[^/\s][^/]{0,127})+$"))]
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    /// Reference key and the AWS account name.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9][-a-zA-Z0-9 _.]{0,49}$"))]
    pub name: String,
    /// Identifies the account; apply creates it when no live account has this email.
    #[schemars(regex(pattern = r"^[^\s@]+@[^\s@]+\.[^\s@]+$"))]
    pub email: String,
    /// Optional pin of the 12-digit account id; a mismatch with live is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{12}$"))]
    pub id: Option<String>,
    /// The unit the account belongs in; apply moves it there. Absent: placement is not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/([^/\s][^/]{0,127}(/[^/\s][^/]{0,127})*)?$"))]
    pub unit: Option<String>,
    /// Take over the existing account of this email although estate did not create it (it
    /// lacks estate's tag): apply may move it, and tags it when it does. Without it, such an
    /// account is a conflict when the manifest would move it. Never implied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

// ---------------------------------------------------------------- Environment

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Where this environment's stack instances go.
    pub targets: Targets,
    /// Default: the Estate's regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), inner(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-\d$")))]
    pub regions: Option<Vec<String>>,
    /// Passed to every stack set of this environment whose template declares them.
    #[serde(default)]
    pub parameters: Parameters,
    #[serde(default)]
    pub approval: Approval,
    /// Any delete in this environment needs `--allow-delete`.
    #[serde(default)]
    pub protected: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Targets {
    /// Units, recursively: every account in the unit and its descendants.
    #[serde(default)]
    pub units: Vec<String>,
    /// Accounts by name.
    #[serde(default)]
    pub accounts: Vec<String>,
}

impl Targets {
    /// Whether an account in the unit at `path` is targeted: a targeted unit is it or above it.
    pub fn reach_unit(&self, path: &str) -> bool {
        self.units
            .iter()
            .any(|u| u == "/" || path == u || path.starts_with(&format!("{u}/")))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    #[default]
    None,
    Manual,
}

// ---------------------------------------------------------------- StackSet

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackSetSpec {
    /// CloudFormation template, relative to this document.
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// One AWS stack set per environment, named `<name>-<environment>`.
    #[schemars(length(min = 1))]
    pub environments: Vec<String>,
    #[serde(default)]
    pub permission_model: PermissionModel,
    /// Self-managed only; default the account's AWSCloudFormationStackSetAdministrationRole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub administration_role_arn: Option<String>,
    /// Self-managed only; default AWSCloudFormationStackSetExecutionRole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_name: Option<String>,
    /// Service-managed only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deployment: Option<AutoDeployment>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub parameters: Parameters,
    /// Per-account (and optionally per-region) parameter overrides.
    #[serde(default)]
    pub overrides: Vec<Override>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationPreferences>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Take over this stack set's existing AWS stack sets that carry no estate's tags (made by
    /// hand or by another tool): they are planned as this estate's instead of as conflicts,
    /// and apply writes estate's tags with the first change it makes to them. Never implied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// The AWS stack set name per environment where it is not `<name>-<environment>` (a
    /// stack set made outside estate, adopted under the name it has).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("additionalProperties" = {"type": "string", "pattern": "^[a-zA-Z][-a-zA-Z0-9]{0,127}$"}))]
    pub stack_set_names: BTreeMap<String, String>,
}

impl StackSetSpec {
    /// The AWS name of the stack set `name` deploys as in `environment`.
    pub fn aws_name(&self, name: &str, environment: &str) -> String {
        self.stack_set_names
            .get(environment)
            .cloned()
            .unwrap_or_else(|| format!("{name}-{environment}"))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionModel {
    #[default]
    SelfManaged,
    ServiceManaged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoDeployment {
    pub enabled: bool,
    #[serde(default)]
    pub retain_stacks_on_account_removal: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Capability {
    #[serde(rename = "CAPABILITY_IAM")]
    Iam,
    #[serde(rename = "CAPABILITY_NAMED_IAM")]
    NamedIam,
    #[serde(rename = "CAPABILITY_AUTO_EXPAND")]
    AutoExpand,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Iam => "CAPABILITY_IAM",
            Capability::NamedIam => "CAPABILITY_NAMED_IAM",
            Capability::AutoExpand => "CAPABILITY_AUTO_EXPAND",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Override {
    /// Account names the override applies to.
    #[schemars(length(min = 1))]
    pub accounts: Vec<String>,
    /// Limit to these regions; default every region of the instance's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    pub parameters: Parameters,
}

/// AWS rejects an operation giving both the count and the percentage of a pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("allOf" = [
    {"not": {"required": ["maxConcurrentPercentage", "maxConcurrentCount"]}},
    {"not": {"required": ["failureTolerancePercentage", "failureToleranceCount"]}}
]))]
pub struct OperationPreferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_concurrent_percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub failure_tolerance_percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_tolerance_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_concurrency: Option<RegionConcurrency>,
    /// Regions in the order operations run through them (sequential concurrency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_order: Option<Vec<String>>,
    /// How failure tolerance bounds concurrency: STRICT_FAILURE_TOLERANCE (AWS's default)
    /// lowers concurrency as failures happen; SOFT_FAILURE_TOLERANCE keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_mode: Option<ConcurrencyMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConcurrencyMode {
    StrictFailureTolerance,
    SoftFailureTolerance,
}

impl ConcurrencyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyMode::StrictFailureTolerance => "STRICT_FAILURE_TOLERANCE",
            ConcurrencyMode::SoftFailureTolerance => "SOFT_FAILURE_TOLERANCE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegionConcurrency {
    Sequential,
    Parallel,
}

// ---------------------------------------------------------------- Portfolio

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortfolioSpec {
    /// Hub account that owns the portfolio.
    pub account: String,
    pub display_name: String,
    pub provider_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub products: Vec<Product>,
    /// Tag option keys and their allowed values.
    #[serde(default)]
    pub tag_options: BTreeMap<String, Vec<String>>,
    /// IAM principal ARNs associated with the portfolio in the hub account: an IAM ARN
    /// (`arn:aws:iam::<account>:role/Name`), or a name pattern without account
    /// (`arn:aws:iam:::role/ml-*`, AWS's IAM_PATTERN) that unit shares give every account of
    /// the unit.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^arn:")))]
    pub principals: Vec<String>,
    #[serde(default)]
    pub share_with: Targets,
    /// Unit shares share the name-pattern principals (AWS's principal name sharing); default
    /// true when `principals` is not empty. AWS takes it for unit shares only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_principals: Option<bool>,
    /// Every share shares the portfolio's tag options; default true when `tagOptions` is not
    /// empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_tag_options: Option<bool>,
    /// Principals (`role/Name`, `user/Name`, `group/Name`) associated in each recipient account.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^(role|user|group)/[\w+=,.@/-]+$")))]
    pub recipient_principals: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Take over the hub's existing portfolio of this `displayName` that carries no estate's
    /// tags (made by hand or by another tool), and inside it the untagged products whose
    /// names `products` give: planned as this estate's instead of as conflicts; apply writes
    /// estate's tags with the first change (`~ portfolio name (adopt)`). Never implied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Product {
    #[schemars(regex(pattern = r"^[a-zA-Z][-a-zA-Z0-9]{0,63}$"))]
    pub name: String,
    pub display_name: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_email: Option<String>,
    /// Provisioning artifacts; a new entry adds a version, existing ones are never rewritten.
    #[schemars(length(min = 1))]
    pub versions: Vec<ProductVersion>,
    /// Local role name for the LAUNCH constraint, valid in every recipient account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_role_name: Option<String>,
    /// Product tags (values may be YAML strings, numbers or booleans, passed as text), e.g.
    /// `sagemaker:studio-visibility: true`, which makes SageMaker Studio list the product.
    #[serde(default)]
    pub tags: BTreeMap<String, ParamValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductVersion {
    pub name: String,
    /// CloudFormation template, relative to this document.
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

// ---------------------------------------------------------------- Pipeline

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSpec {
    /// Where the CodePipeline and its artifact store live.
    pub account: String,
    pub source: PipelineSource,
    /// What each stage deploys, relative to this document.
    pub template: String,
    #[schemars(length(min = 1))]
    pub stages: Vec<Stage>,
    /// Who is told by email (an SNS topic in the tools account) when a stage waits for a
    /// manual approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_notification: Option<ApprovalNotification>,
}

/// What starts the pipeline, in the source account: exactly one of `modelPackageGroup` (an
/// approved model version) and `s3` (an upload of a model artifact).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSource {
    /// SageMaker model package group whose approved versions start the pipeline; estate
    /// creates it, with a resource policy naming the stages' deploy roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"))]
    pub model_package_group: Option<String>,
    /// An S3 object whose uploads start the pipeline; estate creates its bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    /// Account that owns the model package group or the bucket.
    pub account: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Source {
    /// Bucket estate creates in the source account (versioned, KMS-encrypted). S3's names
    /// are global: `${account:NAME}` (the account's id) keeps one unique.
    #[schemars(regex(pattern = r"^([a-z0-9.-]|\$\{account:[^}]+\})+$"))]
    pub bucket: String,
    /// Object key whose uploads start the pipeline (a model artifact, `model.tar.gz`).
    #[schemars(regex(pattern = r"^[^*?]{1,900}$"))]
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalNotification {
    /// Email addresses subscribed to the approvals topic (each confirms its subscription).
    #[schemars(length(min = 1), inner(regex(pattern = r"^[^\s@]+@[^\s@]+\.[^\s@]+$")))]
    pub emails: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stage {
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<StageTest>,
    #[serde(default)]
    pub approval: Approval,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageTest {
    /// CodeBuild buildspec run against the stage after it deploys.
    pub buildspec: String,
    /// What the test may do in each account of the stage, through the role it assumes
    /// there; default: invoke and describe the stage's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub rights: Option<Vec<TestRight>>,
}

/// One statement of the test role's policy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestRight {
    /// IAM actions, each of one service and never all of it (`sagemaker:InvokeEndpoint`,
    /// `sagemaker:Describe*`).
    #[schemars(
        length(min = 1),
        inner(regex(pattern = r"^[a-z0-9-]+:[A-Za-z][A-Za-z0-9]*\*?$"))
    )]
    pub actions: Vec<String>,
    /// Resources: an ARN, or `<service>:<resource>` for an ARN of that service in each
    /// stage account and the home region (`sagemaker:endpoint/my-endpoint`).
    #[schemars(length(min = 1), inner(regex(pattern = r"^[a-z0-9-]+:[^\s]+$")))]
    pub resources: Vec<String>,
}

// ---------------------------------------------------------------- documents

/// A document of one kind: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document<S> {
    #[schemars(with = "ApiVersion")]
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

/// Schema stand-in: the only accepted `apiVersion`.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum ApiVersion {
    #[serde(rename = "estate/v1")]
    V1,
}

/// The kinds a manifest may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Estate,
    Organization,
    Environment,
    StackSet,
    Portfolio,
    Pipeline,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Estate,
        Kind::Organization,
        Kind::Environment,
        Kind::StackSet,
        Kind::Portfolio,
        Kind::Pipeline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Estate => "Estate",
            Kind::Organization => "Organization",
            Kind::Environment => "Environment",
            Kind::StackSet => "StackSet",
            Kind::Portfolio => "Portfolio",
            Kind::Pipeline => "Pipeline",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

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
    /// IAM principal ARNs associated with the portfolio in the hub account.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^arn:")))]
    pub principals: Vec<String>,
    #[serde(default)]
    pub share_with: Targets,
    /// Principals (`role/Name`, `user/Name`, `group/Name`) associated in each recipient account.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^(role|user|group)/[\w+=,.@/-]+$")))]
    pub recipient_principals: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
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
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSource {
    /// SageMaker model package group whose approved versions start the pipeline.
    pub model_package_group: String,
    /// Account that owns the model package group.
    pub account: String,
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

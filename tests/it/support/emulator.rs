//! AWS emulator harness: one moto server per test process (tests/emulator/estate_moto.py),
//! fresh, isolated management accounts on it, the emulator's own configuration calls, and
//! reads of what tests left there (units, stack instances, stacks made by hand).

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_sdk_organizations::types::OrganizationFeatureSet;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};

/// The only region the tests use.
pub const REGION: &str = "us-east-1";

/// Moto imports in about a second; the margin is for a loaded CI machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// A port picked free can be taken by someone else before the server binds it.
const START_ATTEMPTS: usize = 3;
/// Moto's fallback account for unknown credentials; never hand it out.
const MOTO_DEFAULT_ACCOUNT: u64 = 123_456_789_012;

struct Server {
    port: u16,
    log: PathBuf,
    python: PathBuf,
}

/// A failed start is remembered so later tests fail fast with the same message.
static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn server() -> &'static Server {
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(message) => panic!("{message}"),
    }
}

/// Base URL of the emulator, starting it on first use.
pub fn endpoint() -> String {
    format!("http://127.0.0.1:{}", server().port)
}

/// The Python of the emulator's venv (for the emulator's own checks).
pub fn python() -> PathBuf {
    server().python.clone()
}

/// The emulator's log (its stderr): where to look when an AWS call misbehaves.
pub fn log_path() -> &'static Path {
    &server().log
}

/// A management account with its own organization on the emulator.
#[derive(Clone, Debug)]
pub struct TestAccount {
    pub id: String,
    /// Acts as this account against the emulator.
    pub config: SdkConfig,
    /// Root of the account's organization (`r-...`).
    pub root_id: String,
    credentials: Credentials,
}

impl TestAccount {
    /// Account ids of the organization by account name (the management account included).
    pub async fn ids(&self) -> std::collections::BTreeMap<String, String> {
        let org = aws_sdk_organizations::Client::new(&self.config);
        let mut ids = std::collections::BTreeMap::new();
        let mut pages = org.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            for a in page.unwrap().accounts.unwrap_or_default() {
                ids.insert(a.name.unwrap_or_default(), a.id.unwrap_or_default());
            }
        }
        ids
    }

    /// Creates a member account as AWS does it, asynchronously: CreateAccount, then
    /// DescribeCreateAccountStatus until SUCCEEDED; then waits until its
    /// OrganizationAccountAccessRole can be assumed (the strict emulator refuses it for a
    /// moment after creation, as AWS may). Returns the account id.
    pub async fn create_account(&self, name: &str, email: &str) -> String {
        use aws_sdk_organizations::types::CreateAccountState;
        let org = aws_sdk_organizations::Client::new(&self.config);
        let request = org
            .create_account()
            .account_name(name)
            .email(email)
            .send()
            .await
            .unwrap_or_else(|e| fail("organizations:CreateAccount", org_error(e)))
            .create_account_status
            .and_then(|s| s.id)
            .expect("CreateAccount returns a request id");
        let id = loop {
            let status = org
                .describe_create_account_status()
                .create_account_request_id(&request)
                .send()
                .await
                .unwrap_or_else(|e| fail("organizations:DescribeCreateAccountStatus", org_error(e)))
                .create_account_status
                .expect("a status");
            match status.state {
                Some(CreateAccountState::Succeeded) => break status.account_id.expect("an id"),
                Some(CreateAccountState::Failed) => {
                    fail("organizations:CreateAccount", format!("{status:?}"))
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let sts = aws_sdk_sts::Client::new(&self.config);
        for _ in 0..100 {
            let assumed = sts
                .assume_role()
                .role_arn(format!(
                    "arn:aws:iam::{id}:role/OrganizationAccountAccessRole"
                ))
                .role_session_name("estate-tests")
                .send()
                .await;
            if assumed.is_ok() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fail(
            "sts:AssumeRole",
            format!("account {id} never became reachable"),
        )
    }

    /// (name, id) of the organizational units directly under `parent`, sorted.
    pub async fn units(&self, parent: &str) -> Vec<(String, String)> {
        let org = aws_sdk_organizations::Client::new(&self.config);
        let listed = ok(org
            .list_organizational_units_for_parent()
            .parent_id(parent)
            .send()
            .await);
        let mut units: Vec<(String, String)> = listed
            .organizational_units()
            .iter()
            .map(|u| {
                (
                    u.name().unwrap_or_default().to_string(),
                    u.id().unwrap_or_default().to_string(),
                )
            })
            .collect();
        units.sort();
        units
    }

    /// The id of the unit at `path` (e.g. `/ml/data-science`), walked down from the root.
    pub async fn unit_id(&self, path: &str) -> String {
        let mut id = self.root_id.clone();
        for name in path.split('/').filter(|n| !n.is_empty()) {
            let units = self.units(&id).await;
            id = units
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no unit {name:?} of {path}: {units:?}"))
                .1
                .clone();
        }
        id
    }

    /// Changes the strict emulator's timings for this organization only (seconds a creation
    /// stays IN_PROGRESS, polls it needs, seconds a new account refuses AssumeRole).
    pub fn configure_emulator(&self, settings: serde_json::Value) {
        self.emulator_call("EstateEmulator.Configure", settings);
    }

    /// One of the emulator's own calls (`EstateEmulator.*`) for this organization, as a test
    /// hook: what someone could do in AWS outside estate (e.g. delete a stack in a member).
    pub fn emulator_call(&self, target: &str, body: serde_json::Value) {
        self.emulator_answer(target, body);
    }

    /// One of the emulator's own calls for this organization: the body of its answer.
    pub fn emulator_answer(&self, target: &str, body: serde_json::Value) -> String {
        let mut body = body;
        body["ManagementAccount"] = serde_json::json!(self.id);
        let body = body.to_string();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: {target}\r\n\
             Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = TcpStream::connect(("127.0.0.1", server().port)).expect("emulator");
        std::io::Write::write_all(&mut stream, request.as_bytes()).expect("sending");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).expect("reading");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    /// Acting in a member account, as estate does: its OrganizationAccountAccessRole assumed
    /// with this management account's credentials.
    pub async fn member(&self, id: &str) -> SdkConfig {
        self.config
            .to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                assume(&self.config, id, "estate-tests-member").await,
            ))
            .build()
    }

    /// Environment for a child `estate` process acting as this account. Host
    /// AWS_* variables other than these still leak in unless the caller
    /// removes them (or uses `env_clear()`).
    pub fn env(&self) -> Vec<(String, String)> {
        let missing = Path::new("/nonexistent/estate-tests");
        let vars = [
            ("AWS_ENDPOINT_URL", endpoint()),
            ("AWS_ACCESS_KEY_ID", self.credentials.access_key_id().into()),
            (
                "AWS_SECRET_ACCESS_KEY",
                self.credentials.secret_access_key().into(),
            ),
            (
                "AWS_SESSION_TOKEN",
                self.credentials.session_token().unwrap_or_default().into(),
            ),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_MAX_ATTEMPTS", "1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            (
                "AWS_CONFIG_FILE",
                missing.join("config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                missing.join("credentials").display().to_string(),
            ),
            ("NO_COLOR", "1".into()),
        ];
        vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// An S3 client acting as `config` does, with path-style addressing (the emulator serves no
/// bucket host names).
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// The value of a call that must succeed; the full error and the emulator log otherwise.
pub fn ok<T, E: std::error::Error + 'static>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!(
            "{}\nemulator log: {}",
            aws_sdk_sts::error::DisplayErrorContext(e),
            log_path().display()
        ),
    }
}

/// (account, status) of a stack set's instances, sorted.
pub async fn stack_instances(account: &TestAccount, set: &str) -> Vec<(String, String)> {
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    let mut out: Vec<(String, String)> =
        ok(cfn.list_stack_instances().stack_set_name(set).send().await)
            .summaries
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                (
                    s.account.unwrap_or_default(),
                    s.status.map(|x| x.as_str().to_string()).unwrap_or_default(),
                )
            })
            .collect();
    out.sort();
    out
}

/// The name of the stack a stack set's instance holds in the account `config` acts in (AWS,
/// and the strict emulator, name it `StackSet-<set>-<uuid>`); panics when there is none.
pub async fn stack_set_stack(config: &SdkConfig, set: &str) -> String {
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let stacks = ok(cfn.list_stacks().send().await);
    // The UUID tells `pipeline-p`'s stack from `pipeline-p-source`'s.
    let prefix = format!("StackSet-{set}-");
    let of_set = |name: &str| {
        name.strip_prefix(&prefix).is_some_and(|rest| {
            rest.len() == 36 && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        })
    };
    stacks
        .stack_summaries()
        .iter()
        .find(|s| {
            s.stack_name().is_some_and(of_set)
                && s.stack_status()
                    .is_some_and(|st| st.as_str() != "DELETE_COMPLETE")
        })
        .and_then(|s| s.stack_name())
        .unwrap_or_else(|| panic!("no stack of {set}: {stacks:?}"))
        .to_string()
}

/// A stack named `name` from `template`, made by hand in the account `config` acts in (what
/// someone could do outside estate), waited for until complete.
pub async fn stack_by_hand(config: &SdkConfig, name: &str, template: &serde_json::Value) {
    let cfn = aws_sdk_cloudformation::Client::new(config);
    ok(cfn
        .create_stack()
        .stack_name(name)
        .template_body(template.to_string())
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await);
    let status = ok(cfn.describe_stacks().stack_name(name).send().await).stacks()[0]
        .stack_status()
        .map(|s| s.as_str().to_string());
    assert_eq!(status.as_deref(), Some("CREATE_COMPLETE"));
}

/// Credentials of account `id`'s OrganizationAccountAccessRole, assumed with `from`. A
/// just-created account refuses AssumeRole for a moment (the strict emulator, like AWS): that
/// answer is retried for a bounded time, as estate itself does.
async fn assume(from: &SdkConfig, id: &str, name: &'static str) -> Credentials {
    let sts = aws_sdk_sts::Client::new(from);
    let started = std::time::Instant::now();
    let assumed = loop {
        let sent = sts
            .assume_role()
            .role_arn(format!(
                "arn:aws:iam::{id}:role/OrganizationAccountAccessRole"
            ))
            .role_session_name("estate-tests")
            .send()
            .await;
        match sent {
            Ok(out) => break out,
            Err(e)
                if e.as_service_error()
                    .and_then(|s| aws_sdk_sts::error::ProvideErrorMetadata::code(s))
                    == Some("AccessDenied")
                    && started.elapsed() < std::time::Duration::from_secs(30) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => fail("sts:AssumeRole", aws_sdk_sts::error::DisplayErrorContext(e)),
        }
    };
    let c = assumed
        .credentials()
        .unwrap_or_else(|| fail("sts:AssumeRole", "no credentials in the response"));
    Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        name,
    )
}

/// A new account id, organization and root, isolated from every other test.
///
/// Moto keys its state by account, and maps the credentials that STS
/// AssumeRole returns to the account in the role ARN, so assuming a role in a
/// fresh id yields an account nobody else touches.
pub async fn management_account() -> TestAccount {
    let id = fresh_account_id();
    let base = sdk_config(Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "estate-tests-base",
    ));
    let credentials = assume(&base, &id, "estate-tests").await;
    let config = sdk_config(credentials.clone());

    let org = aws_sdk_organizations::Client::new(&config);
    let created = org
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap_or_else(|e| fail("organizations:CreateOrganization", org_error(e)));
    let master = created
        .organization()
        .and_then(|o| o.master_account_id())
        .unwrap_or_default();
    assert_eq!(
        master,
        id,
        "the assumed-role credentials did not map to account {id}; emulator log: {}",
        log_path().display()
    );
    // CreateOrganization does not return the root; ListRoots does.
    let roots = org
        .list_roots()
        .send()
        .await
        .unwrap_or_else(|e| fail("organizations:ListRoots", org_error(e)));
    let root_id = match roots.roots() {
        [root] => root.id().unwrap_or_default().to_string(),
        other => fail("organizations:ListRoots", format!("{other:?}")),
    };
    TestAccount {
        id,
        config,
        root_id,
        credentials,
    }
}

/// Client configuration for the emulator, built from nothing on the host
/// (no profile files or AWS_* variables) so a developer's AWS setup can't leak in.
fn sdk_config(credentials: Credentials) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build()
}

fn org_error<E, R>(e: aws_sdk_organizations::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    aws_sdk_organizations::error::DisplayErrorContext(e).to_string()
}

fn fail(what: &str, err: impl std::fmt::Display) -> ! {
    panic!(
        "{what} against the emulator failed: {err}\nemulator log: {}",
        log_path().display()
    )
}

/// 12 digits, no leading zero, unique within this process (the counter) and
/// very likely across processes and runs (pid and clock pick the start).
pub fn fresh_account_id() -> String {
    const FIRST: u64 = 100_000_000_000;
    const SPAN: u64 = 900_000_000_000;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BASE: OnceLock<u64> = OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        splitmix64(nanos ^ u64::from(std::process::id()).rotate_left(40)) % SPAN
    });
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = FIRST + (base + n % SPAN) % SPAN;
        if id != MOTO_DEFAULT_ACCOUNT {
            return id.to_string();
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn start() -> Result<Server, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("ESTATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let python = venv.join("bin").join("python");
    if !python.exists() {
        return Err(format!(
            "no Python venv with moto at {}: run scripts/test once (it creates the venv), \
             or set ESTATE_VENV to one",
            venv.display()
        ));
    }
    let script = root.join("tests/emulator/estate_moto.py");
    let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(log_dir).map_err(|e| format!("creating {}: {e}", log_dir.display()))?;
    remove_stale_logs(log_dir);
    let log = log_dir.join(format!("moto-{}.log", std::process::id()));

    let mut errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match free_port().and_then(|port| launch(&python, &script, port, &log)) {
            Ok(port) => return Ok(Server { port, log, python }),
            Err(Launch::Retry(e)) => errors.push(e),
            Err(Launch::GiveUp(e)) => {
                errors.push(e);
                break;
            }
        }
    }
    Err(format!(
        "the AWS emulator did not start ({}):\n{}\nemulator log: {}\n{}",
        python.display(),
        errors.join("\n"),
        log.display(),
        log_tail(&log)
    ))
}

fn free_port() -> Result<u16, Launch> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Launch::GiveUp(format!("binding a port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Launch::GiveUp(format!("reading the bound port: {e}")))?
        .port();
    Ok(port)
}

/// Why a start attempt failed: an early exit (most likely the port was taken
/// meanwhile) is worth another port; a hang or a local error is not.
enum Launch {
    Retry(String),
    GiveUp(String),
}

enum Event {
    Ready(u16),
    Exited(String),
    TimedOut,
}

/// Starts the server on `port` and waits until it accepts connections.
fn launch(python: &Path, script: &Path, port: u16, log: &Path) -> Result<u16, Launch> {
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Launch::GiveUp(format!("opening {}: {e}", log.display())))?;
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(port.to_string())
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);

    let child: Arc<Mutex<Option<Child>>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let shared = Arc::clone(&child);
    // The server dies with the thread that spawned it (PR_SET_PDEATHSIG is per
    // thread), so it is spawned from a thread that lives as long as the process
    // rather than from whichever test happened to come first.
    thread::Builder::new()
        .name(format!("moto-{port}"))
        .spawn(move || supervise(command, &shared, &tx))
        .map_err(|e| Launch::GiveUp(format!("spawning the supervisor thread: {e}")))?;

    match rx.recv_timeout(STARTUP_TIMEOUT).unwrap_or(Event::TimedOut) {
        Event::Ready(ready_port) => {
            let addr = SocketAddr::from(([127, 0, 0, 1], ready_port));
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
                Launch::GiveUp(format!("port {ready_port}: READY but connect failed: {e}"))
            })?;
            Ok(ready_port)
        }
        Event::Exited(reason) => Err(Launch::Retry(format!("port {port}: {reason}"))),
        Event::TimedOut => {
            if let Some(mut c) = child.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            Err(Launch::GiveUp(format!(
                "port {port}: no READY line within {STARTUP_TIMEOUT:?}"
            )))
        }
    }
}

/// Body of the thread that owns the server process; never returns once the
/// server is up.
fn supervise(mut command: Command, child: &Mutex<Option<Child>>, tx: &mpsc::Sender<Event>) {
    let mut spawned = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Event::Exited(format!("spawning the server failed: {e}")));
            return;
        }
    };
    let stdout = spawned.stdout.take().expect("stdout is piped");
    *child.lock().unwrap_or_else(|e| e.into_inner()) = Some(spawned);

    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(port) = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
        {
            ready = true;
            let _ = tx.send(Event::Ready(port));
        }
    }
    if !ready {
        let status = match child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(mut c) => match c.wait() {
                Ok(status) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            },
            None => "killed after the timeout".to_string(),
        };
        let _ = tx.send(Event::Exited(format!("exited before READY ({status})")));
        return;
    }
    // The server sent its stdout to its log after READY, hence the EOF above.
    loop {
        thread::park();
    }
}

/// Logs of test processes that are gone; keeps target/tmp from piling up.
fn remove_stale_logs(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("moto-"))
            .and_then(|n| n.strip_suffix(".log"))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Logical ids of the resources the stack of `stack_set` holds in account `id`.
pub async fn stack_resources(
    account: &TestAccount,
    id: &str,
    stack_set: &str,
) -> std::collections::BTreeSet<String> {
    let config = account.member(id).await;
    let stack = stack_set_stack(&config, stack_set).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    ok(cfn.list_stack_resources().stack_name(stack).send().await)
        .stack_resource_summaries()
        .iter()
        .filter_map(|r| r.logical_resource_id().map(str::to_string))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Waits until a stack-set operation ends, whatever its outcome; returns its status.
pub async fn operation_ends(account: &TestAccount, stack_set: &str, operation: &str) -> String {
    let cfn = aws_sdk_cloudformation::Client::new(&account.config);
    for _ in 0..200 {
        let status = cfn
            .describe_stack_set_operation()
            .stack_set_name(stack_set)
            .operation_id(operation)
            .send()
            .await
            .unwrap()
            .stack_set_operation
            .and_then(|o| o.status)
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        if !matches!(status.as_str(), "RUNNING" | "QUEUED" | "STOPPING") {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("operation {operation} on {stack_set} never ended");
}

/// Waits until a stack-set operation ends; it must succeed.
pub async fn operation_succeeds(account: &TestAccount, stack_set: &str, operation: &str) {
    let status = operation_ends(account, stack_set, operation).await;
    if status != "SUCCEEDED" {
        let results = aws_sdk_cloudformation::Client::new(&account.config)
            .list_stack_set_operation_results()
            .stack_set_name(stack_set)
            .operation_id(operation)
            .send()
            .await
            .unwrap();
        panic!("operation {operation} on {stack_set}: {status}: {results:?}");
    }
}

//! Cold start of the four function binaries: each release binary is started under a local Lambda Runtime API
//! ([`crate::lambda_emu`]) with the environment Lambda gives it and the stores on moto (the app secret is read from
//! Secrets Manager during init, as in production). Measured: time from spawning the process to its answer to the
//! first invocation (a cheap event), median of N starts; peak RSS (`VmHWM`) just before the process is killed;
//! binary and zip size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cpu;
use crate::lambda_emu::{Answered, RuntimeApi};
use crate::table::{Table, Verdict};

pub const FUNCTIONS: &[(&str, &str)] = &[
    ("oauth-callback", "status.json"),
    ("test-connection", "test-connection.json"),
    ("push-invoice", "get-invoice.json"),
    ("exact-webhook-paid", "webhook-validation.json"),
];

/// Targets (design).
const COLD_START_MS: f64 = 10.0;
const ZIP_BYTES: u64 = 6_000_000;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn release_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BENCH_BIN_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_relative() {
        workspace_root().join(target)
    } else {
        target
    };
    target.join("release")
}

/// `cargo build --release --locked -p <the four functions>` (each function's own dependency features, as
/// `sam build` builds them). Output goes to the terminal.
pub fn build() -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--locked"]);
    for (f, _) in FUNCTIONS {
        cmd.args(["-p", f]);
    }
    let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed ({status})"))
    }
}

fn zip_size(bin: &Path, name: &str) -> Result<u64, String> {
    let dir = std::env::temp_dir().join(format!("psa-exact-zip-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let bootstrap = dir.join("bootstrap");
    std::fs::copy(bin, &bootstrap).map_err(|e| e.to_string())?;
    let zip = dir.join("function.zip");
    let out = Command::new("zip")
        .current_dir(&dir)
        .args(["-q", "-9", "-X", "function.zip", "bootstrap"])
        .status()
        .map_err(|e| format!("zip CLI not available: {e}"))?;
    if !out.success() {
        return Err("zip failed".into());
    }
    let size = std::fs::metadata(&zip)
        .map(|m| m.len())
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    size
}

struct Env {
    table: String,
    secret: String,
    moto: String,
    /// Median time of one GetSecretValue on moto from a fresh client (what init waits for).
    get_secret_ms: f64,
}

async fn prepare_moto() -> Result<Env, String> {
    let moto = testkit::MotoServer::shared().await;
    let clients = store::AwsClients::for_endpoint(&moto.endpoint(), "eu-west-1").await;
    let table = testkit::unique("cold");
    store::create_table(clients.dynamodb(), &table)
        .await
        .map_err(|e| format!("create table: {e}"))?;
    let secret = testkit::unique("psa-exact-app");
    let value = json!({
        "exact_client_id": exact_sandbox::seed::CLIENT_ID,
        "exact_client_secret": "sandbox-client-secret",
        "exact_webhook_secret": "sandbox-webhook-secret",
        "psa_api_key": e2e::PSA_KEY,
        "psa_callback_secret": e2e::PSA_CALLBACK_SECRET,
    });
    clients
        .secrets()
        .create_secret()
        .name(&secret)
        .secret_string(value.to_string())
        .send()
        .await
        .map_err(|e| format!("create the app secret: {e:?}"))?;
    let mut samples = Vec::new();
    for _ in 0..7 {
        let fresh = store::AwsClients::for_endpoint(&moto.endpoint(), "eu-west-1").await;
        let t = Instant::now();
        if fresh
            .secrets()
            .get_secret_value()
            .secret_id(&secret)
            .send()
            .await
            .is_ok()
        {
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok(Env {
        table,
        secret,
        moto: moto.endpoint(),
        get_secret_ms: percentile(&samples, 0.5),
    })
}

struct Start {
    ms: f64,
    /// Spawn → the runtime's first `invocation/next` (init: configuration, AWS clients, the app secret).
    init_ms: f64,
    rss_kb: Option<u64>,
    status: String,
}

async fn start_once(
    bin: &Path,
    name: &str,
    env: &Env,
    api: &RuntimeApi,
    event: &str,
    i: usize,
) -> Result<Start, String> {
    api.arm(event, &format!("bench-{name}-{i}"));
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/22/[$LATEST]0123456789abcdef",
        )
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL", &env.moto)
        .env("TABLE_NAME", &env.table)
        .env("APP_SECRET_ARN", &env.secret)
        .env(
            "PUBLIC_BASE_URL",
            "https://abc123def4.execute-api.eu-west-1.amazonaws.com",
        )
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let answer = api.wait(Duration::from_secs(15)).await;
    let rss_kb = cpu::peak_rss_kb(child.id());
    // Our own child, by its handle.
    let _ = child.kill();
    let _ = child.wait();
    match answer {
        Some(Answered::Response { at, body }) => {
            let init_ms = api
                .handed_out()
                .map(|t| t.duration_since(started).as_secs_f64() * 1000.0)
                .unwrap_or(f64::NAN);
            let status = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["statusCode"].as_i64())
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into());
            Ok(Start {
                ms: at.duration_since(started).as_secs_f64() * 1000.0,
                init_ms,
                rss_kb,
                status,
            })
        }
        Some(Answered::Error { body, .. }) => Err(format!(
            "the function reported an error: {}",
            body.chars().take(200).collect::<String>()
        )),
        None => Err("no answer within 15 s".into()),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn run(table: &mut Table, starts: usize, built: Result<(), String>) {
    let note_target = "native x86_64 release build (not the arm64 Lambda build)";
    let target = format!("≤ {COLD_START_MS} ms median");
    let target = target.as_str();
    if let Err(e) = built {
        for (f, _) in FUNCTIONS {
            table.not_measured(format!("Cold start: {f}"), target, &e);
        }
        return;
    }
    let env = match prepare_moto().await {
        Ok(e) => e,
        Err(e) => {
            for (f, _) in FUNCTIONS {
                table.not_measured(format!("Cold start: {f}"), target, &e);
            }
            return;
        }
    };
    let api = match RuntimeApi::start().await {
        Ok(a) => a,
        Err(e) => {
            table.not_measured("Cold start", target, &e.to_string());
            return;
        }
    };
    table.row(
        "moto: one GetSecretValue from a fresh SDK client (part of every init below)",
        format!("{:.1} ms median", env.get_secret_ms),
        "—",
        Verdict::Info,
    );
    let dir = release_dir();
    for (name, event_file) in FUNCTIONS {
        let bin = dir.join(name);
        let event = match std::fs::read_to_string(workspace_root().join("events").join(event_file))
        {
            Ok(e) => e,
            Err(e) => {
                table.not_measured(format!("Cold start: {name}"), target, &e.to_string());
                continue;
            }
        };
        let size = std::fs::metadata(&bin).map(|m| m.len());
        let Ok(size) = size else {
            table.not_measured(format!("Cold start: {name}"), target, "binary not built");
            continue;
        };
        let mut times = Vec::new();
        let mut inits = Vec::new();
        let mut rss = Vec::new();
        let mut statuses = std::collections::BTreeSet::new();
        let mut error = None;
        // One extra start first, not counted: it warms the page cache and moto.
        for i in 0..=starts {
            match start_once(&bin, name, &env, &api, &event, i).await {
                Ok(s) if i > 0 => {
                    times.push(s.ms);
                    inits.push(s.init_ms);
                    rss.extend(s.rss_kb);
                    statuses.insert(s.status);
                }
                Ok(_) => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = error {
            table.row(
                format!("Cold start: {name}"),
                format!("failed: {e}"),
                target,
                Verdict::Fail(e),
            );
            continue;
        }
        times.sort_by(|a, b| a.total_cmp(b));
        inits.sort_by(|a, b| a.total_cmp(b));
        rss.sort_unstable();
        let median = percentile(&times, 0.5);
        let verdict = if median <= COLD_START_MS {
            Verdict::Pass
        } else {
            let init = percentile(&inits, 0.5);
            Verdict::Missed(format!(
                "median {median:.1} ms > {COLD_START_MS} ms: init (process start → first invocation/next: \
                 configuration, AWS SDK and HTTP clients, reading the app secret — one GetSecretValue on moto \
                 ≈ {:.1} ms) takes {init:.1} ms, the first invocation {:.1} ms",
                env.get_secret_ms,
                median - init
            ))
        };
        table.row(
            format!("Cold start: {name} (spawn → first answered invocation)"),
            format!(
                "median {median:.1} ms, of which init {:.1} ms (min {:.1}, p90 {:.1}, max {:.1}; {} starts; event {event_file} → {})",
                percentile(&inits, 0.5),
                percentile(&times, 0.0),
                percentile(&times, 0.9),
                percentile(&times, 1.0),
                times.len(),
                statuses.into_iter().collect::<Vec<_>>().join("/")
            ),
            target,
            verdict,
        );
        let rss_mb = rss.get(rss.len() / 2).map(|kb| *kb as f64 / 1024.0);
        table.row(
            format!("Peak RSS: {name}"),
            rss_mb
                .map(|m| format!("{m:.1} MB (median VmHWM)"))
                .unwrap_or_else(|| "n/a".into()),
            "—",
            Verdict::Info,
        );
        match zip_size(&bin, name) {
            Ok(z) => {
                let verdict = if z <= ZIP_BYTES {
                    Verdict::Pass
                } else {
                    Verdict::Missed(format!(
                        "{z} B zipped > 6,000,000 B (decimal MB; it is {} 6 MiB = 6,291,456 B). Native x86_64 \
                         build with the AWS SDK (DynamoDB, Secrets Manager), rustls/aws-lc and reqwest linked in; \
                         the arm64 Lambda build from `sam build` is a different binary and is not measured here",
                        if z <= 6_291_456 {
                            "within"
                        } else {
                            "also above"
                        }
                    ))
                };
                table.row(
                    format!("Size: {name}"),
                    format!(
                        "binary {size} B ({:.2} MB), zip {z} B ({:.2} MB) ({note_target})",
                        size as f64 / 1e6,
                        z as f64 / 1e6
                    ),
                    "zip ≤ 6 MB (6,000,000 B)",
                    verdict,
                );
            }
            Err(e) => table.row(
                format!("Size: {name}"),
                format!("binary {:.2} MB, zip: {e}", size as f64 / 1e6),
                "zip ≤ 6 MB (6,000,000 B)",
                Verdict::NotMeasured(e),
            ),
        }
    }
}

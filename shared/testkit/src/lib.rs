//! Test support shared by the crates' tests.
//!
//! - [`MotoServer`]: one moto server (local DynamoDB and Secrets Manager over the AWS wire protocol) per test
//!   binary, started lazily on a free loopback port and killed when the test process exits.
//! - [`free_port`]: a loopback port nobody listens on right now.
//! - [`unique`]: a name with a random suffix, so tests sharing a moto server isolate by table name or secret prefix.
//! - [`pdf`]: small valid PDF files made here, for attachments.
//!
//! A missing `moto_server` is a panic, never a silent skip: a test that did not run must not pass.

use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OnceCell;

pub mod pdf;

/// How long a fresh moto server may take to answer `GET /moto-api/`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A moto server on `127.0.0.1`, shared by every test of one test binary.
#[derive(Debug)]
pub struct MotoServer {
    port: u16,
    log: PathBuf,
    /// The watchdog shell (see [`spawn_tied_to_this_process`]); kept so it is never a detached child.
    _watchdog: Mutex<Child>,
}

static SHARED: OnceCell<MotoServer> = OnceCell::const_new();

impl MotoServer {
    /// The test binary's moto server, started on first use.
    ///
    /// Panics when `moto_server` cannot be found or does not become ready: the tests that need it must not pass
    /// without it.
    pub async fn shared() -> &'static MotoServer {
        SHARED.get_or_init(Self::start).await
    }

    /// `http://127.0.0.1:{port}`, for `AWS_ENDPOINT_URL` or an SDK config's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server's output goes while it runs (useful when a test fails in an unexpected way).
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    async fn start() -> MotoServer {
        let moto = find_moto_server().unwrap_or_else(|| {
            panic!("moto_server not found: run `make setup` (bash scripts/setup.sh)")
        });
        let mut last_failure = String::new();
        // A free port can be taken between our probe and moto's bind; a few attempts make that race harmless.
        for _ in 0..3 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!("moto-{}-{port}.log", std::process::id()));
            let mut watchdog = spawn_tied_to_this_process(&moto, port, &log);
            if wait_ready(port, &mut watchdog).await {
                return MotoServer {
                    port,
                    log,
                    _watchdog: Mutex::new(watchdog),
                };
            }
            last_failure = std::fs::read_to_string(&log).unwrap_or_default();
            stop(watchdog);
            let _ = std::fs::remove_file(&log);
        }
        panic!(
            "moto_server ({}) exited or did not answer within {READY_WITHIN:?}; its log:\n{last_failure}",
            moto.display()
        );
    }
}

/// Starts moto through a small shell that polls this test process and kills moto once it is gone. A `static`
/// is never dropped, so a `Drop` impl could not stop the server; this way it dies with the test binary, however
/// the binary ends (normal exit, panic, or SIGKILL). SIGTERM to the shell stops moto too. If moto exits on its
/// own (port taken, broken install), the shell exits and leaves the log for the error message.
fn spawn_tied_to_this_process(moto: &Path, port: u16, log: &Path) -> Child {
    const WATCHDOG: &str = r#"
        if [ -n "$5" ]; then "$5" "$6" -H 127.0.0.1 -p "$2" >"$4" 2>&1 </dev/null &
        else "$1" -H 127.0.0.1 -p "$2" >"$4" 2>&1 </dev/null &
        fi
        m=$!
        trap 'kill "$m" 2>/dev/null; exit 0' TERM
        while kill -0 "$3" 2>/dev/null; do
            kill -0 "$m" 2>/dev/null || exit 1
            sleep 0.5
        done
        kill "$m" 2>/dev/null
        rm -f "$4"
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("moto-watchdog")
        .arg(moto)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .arg(log)
        .args(serial_launcher(moto))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh to run moto_server")
}

/// The Python beside `moto_server` and `scripts/moto_serial.py` (moto handling one request at a time, so its
/// conditional writes are atomic like DynamoDB's), or nothing when either is missing (plain `moto_server`).
fn serial_launcher(moto: &Path) -> Vec<PathBuf> {
    let python = moto.with_file_name("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/moto_serial.py");
    if python.is_file() && script.is_file() {
        vec![python, script]
    } else {
        Vec::new()
    }
}

/// Stops a watchdog (and so its moto) that did not come up, and reaps it.
fn stop(mut watchdog: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(watchdog.id().to_string())
        .status();
    let _ = watchdog.wait();
}

/// Polls `GET /moto-api/` until it answers 2xx, the watchdog exits (moto died), or [`READY_WITHIN`] passes.
async fn wait_ready(port: u16, watchdog: &mut Child) -> bool {
    let url = format!("http://127.0.0.1:{port}/moto-api/");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("a plain reqwest client builds");
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if let Ok(resp) = client.get(&url).send().await
            && resp.status().is_success()
        {
            return true;
        }
        if !matches!(watchdog.try_wait(), Ok(None)) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server`, else `moto_server` on `PATH`.
fn find_moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = workspace.join(".venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
}

/// A loopback TCP port that was free a moment ago (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// `{prefix}-{random}`: lower-case letters and digits, valid in DynamoDB table names and secret names.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // RandomState is seeded randomly per process; hashing the counter and the time gives distinct suffixes
    // within a process and across concurrently running test binaries.
    let r = RandomState::new().hash_one((n, nanos, std::process::id()));
    format!("{prefix}-{r:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_the_prefix() {
        let a = unique("t");
        let b = unique("t");
        assert_ne!(a, b);
        assert!(a.starts_with("t-") && a.len() == 2 + 16);
    }

    #[test]
    fn free_port_can_be_bound() {
        let p = free_port();
        assert!(p > 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).expect("the port is free");
    }

    #[tokio::test]
    async fn moto_starts_once_and_answers() {
        let a = MotoServer::shared().await;
        let b = MotoServer::shared().await;
        assert_eq!(a.port(), b.port());
        let resp = reqwest::get(format!("{}/moto-api/", a.endpoint()))
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
}

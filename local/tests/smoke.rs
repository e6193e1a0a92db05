//! `cargo run -- smoke` against the sandbox, through its real redirect listener: every fact confirmed where the
//! sandbox behaves as `docs/exact-online.md` believes; contradicted, with the value observed, where a switch of
//! `SandboxConfig::beliefs` makes it behave otherwise; read-only really only reads; the calls reported are the
//! calls the sandbox saw; nothing secret in the report or the recordings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use exact::{CallStats, ExactClient, RateLimiter, SystemClock};
use exact_sandbox::{Beliefs, Sandbox, SandboxConfig};
use mapping::Division;
use psa_exact_local::smoke::{self, Fact, Operator, Options, Report, Verdict};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

const JAN: &str = "jan@jansen.example";
const DIVISION: u32 = 1001;

/// Stands in for the person at the terminal: signs in at the sandbox like a browser, following the redirect to the
/// smoke test's own listener; when asked to match a payment, pays `pay` in the sandbox (if set) and lets the
/// sandbox deliver its webhooks.
struct Browser {
    sb: Sandbox,
    pay: Option<String>,
}

impl Operator for Browser {
    fn sign_in_at(&self, authorize_url: &Url) {
        let (sb, url) = (self.sb.clone(), authorize_url.to_string());
        tokio::spawn(async move {
            // A failure here shows as the smoke test's "no redirect came back".
            if let Ok(back) = sb.consent(&url, JAN).await {
                let _ = reqwest::get(back).await;
            }
        });
    }
    fn say(&self, _: &str) {}
    async fn match_a_payment(&self, _wait: Duration) {
        if let Some(id) = &self.pay {
            self.sb
                .pay_invoice(DIVISION, id, 121.0)
                .expect("pay the prepared invoice");
        }
        self.sb.deliver_webhooks().await;
    }
}

/// A sandbox where Jan has administration 1001 open, with more than one page of customers.
async fn sandbox(beliefs: Beliefs) -> Sandbox {
    let sb = Sandbox::start_with(SandboxConfig {
        beliefs,
        ..SandboxConfig::default()
    })
    .await;
    {
        let mut w = sb.world();
        if let Some(u) = w.user_mut(JAN) {
            u.current_division = DIVISION;
        }
        w.seed_accounts(DIVISION, 61);
    }
    sb
}

/// An open receivable of 121.00 (100 + 21 % VAT) to pay when the smoke test asks for a matched payment.
async fn payable_invoice(sb: &Sandbox) -> String {
    let token = sb.issue_tokens(JAN).access_token;
    let c = ExactClient::new(
        exact::http_client(Duration::from_secs(10)),
        Url::parse(&sb.base_url()).unwrap(),
        Division::new(DIVISION).unwrap(),
        SecretString::from(token),
        RateLimiter::new(),
        CallStats::new(),
        Arc::new(SystemClock),
    );
    let (account, item) = {
        let mut w = sb.world();
        let account = w.add_account(DIVISION, "Paying customer B.V.").id;
        let item = w
            .division(DIVISION)
            .and_then(|d| d.item_by_code("CONSULT"))
            .unwrap()
            .id;
        (account, item)
    };
    let inv = c
        .create_sales_invoice(&json!({
            "Journal": "70", "OrderedBy": account,
            "SalesInvoiceLines": [{"Item": item, "Quantity": 1, "UnitPrice": 100.0, "NetPrice": 100.0, "VATCode": "2"}],
        }))
        .await
        .unwrap();
    c.print_sales_invoice(&json!({"InvoiceID": inv.invoice_id, "SendEmailToCustomer": false}))
        .await
        .unwrap();
    inv.invoice_id.to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The command line an operator would type, pointed at the sandbox.
fn options(sb: &Sandbox, extra: &[&str]) -> Options {
    let port = free_port();
    let mut args: Vec<String> = [
        "--client-id",
        &sb.client_id(),
        "--redirect-uri",
        &format!("http://127.0.0.1:{port}/callback"),
        "--base-url",
        &sb.base_url(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for a in extra {
        args.push(a.replace("{port}", &port.to_string()));
    }
    let secret = sb.client_secret();
    let env = move |var: &str| (var == "EXACT_CLIENT_SECRET").then(|| secret.clone());
    let mut o = Options::parse(&args, env).expect("the smoke options");
    o.sign_in_timeout = Duration::from_secs(20);
    o
}

fn write_args(record: &Path, secret: &str, watch: &str) -> Vec<String> {
    [
        "--write",
        "--entry-journal",
        "72",
        "--webhook-url",
        "http://127.0.0.1:{port}/exact/webhooks",
        "--webhook-secret",
        secret,
        "--watch",
        watch,
        "--record",
        &record.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("psa-exact-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn verdict(r: &Report, f: Fact) -> &Verdict {
    r.verdict(f)
        .unwrap_or_else(|| panic!("no line for {f:?} in\n{r}"))
}

/// Everything that must never be printed or written: tokens, codes, the app's secrets, Jan's name and e-mail.
fn secrets(sb: &Sandbox) -> Vec<String> {
    let w = sb.world();
    let mut s: Vec<String> = w
        .tokens
        .access_tokens
        .keys()
        .chain(w.tokens.refresh_tokens.keys())
        .chain(w.tokens.codes.keys())
        .cloned()
        .collect();
    s.extend([
        w.app.client_secret.clone(),
        w.app.webhook_secret.clone(),
        "Jan Jansen".into(),
        JAN.into(),
    ]);
    s
}

fn assert_nothing_secret(text: &str, secrets: &[String], what: &str) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} holds {s}:\n{text}");
    }
}

/// The calls the report counts are the calls the sandbox answered.
fn assert_calls_match(sb: &Sandbox, r: &Report) {
    assert_eq!(
        (r.api_calls() as usize, r.token_calls() as usize),
        (sb.api_calls(DIVISION), sb.token_calls()),
        "{r}"
    );
}

#[tokio::test]
async fn against_the_sandbox_every_fact_is_confirmed() {
    let sb = sandbox(Beliefs::default()).await;
    let pay = payable_invoice(&sb).await;
    sb.clear_requests();
    let dir = temp_dir("smoke-confirmed");
    let opts = options(
        &sb,
        &write_args(&dir, &sb.webhook_secret(), "10")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let browser = Browser {
        sb: sb.clone(),
        pay: Some(pay),
    };
    let report = smoke::run(&opts, &browser).await.expect("the smoke run");
    for (fact, v) in &report.verdicts {
        if fact.checkable() {
            assert!(v.is_confirmed(), "{fact:?}: {v}\n{report}");
        } else {
            assert!(
                matches!(v, Verdict::NotChecked(why) if why.starts_with("not checkable")),
                "{fact:?}: {v}"
            );
        }
    }
    assert_eq!(report.verdicts.len(), Fact::ALL.len());
    assert_calls_match(&sb, &report);
    let text = report.to_string();
    assert!(
        text.contains("15 confirmed, 0 contradicted, 1 not checked"),
        "{text}"
    );
    assert_nothing_secret(&text, &secrets(&sb), "the report");

    // The subscriptions made for the check are gone again; the processed invoices stay (Exact keeps them).
    let w = sb.world();
    let d = w.division(DIVISION).unwrap();
    assert!(d.webhook_subscriptions.is_empty());
    assert_eq!(
        d.sales_invoices
            .iter()
            .filter(|i| i
                .your_ref
                .as_deref()
                .is_some_and(|r| r.starts_with("SMOKE-")))
            .count(),
        2
    );
    assert!(d.emails_sent.is_empty(), "processed without e-mail");
    drop(w);

    // Every recording parses with the client's parsers and holds nothing secret.
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, report.recorded.len());
    let secrets = secrets(&sb);
    let mut ops = Vec::new();
    for f in &report.recorded {
        let text = std::fs::read_to_string(f).unwrap();
        assert_nothing_secret(&text, &secrets, f);
        assert!(
            !text.contains("Jansen Consultancy"),
            "{f}: the administration's name"
        );
        let e: exact::recorded::Exchange = serde_json::from_str(&text).unwrap();
        exact::recorded::read(&e).unwrap_or_else(|m| panic!("{f}: {m}"));
        ops.push(e.operation);
    }
    for op in [
        "oauth_exchange_code",
        "oauth_refresh",
        "probe_create_invoice",
        "webhook_delivery",
    ] {
        assert!(ops.iter().any(|o| o == op), "no {op} recorded: {ops:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_sandbox_that_contradicts_a_belief_is_reported_with_what_it_did() {
    let sb = sandbox(Beliefs {
        numbering_at_entry: false,
        trim_in_filters: false,
        subscription_division_filter: false,
        too_early_reason: "RefreshTooSoon".into(),
        reset_in_epoch_ms: false,
    })
    .await;
    let dir = temp_dir("smoke-contradicted");
    let opts = options(
        &sb,
        &write_args(&dir, &sb.webhook_secret(), "1")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    // Nobody matches a payment: only the smoke test's own invoices raise webhooks.
    let report = smoke::run(
        &opts,
        &Browser {
            sb: sb.clone(),
            pay: None,
        },
    )
    .await
    .expect("the smoke run");

    // The number the journal gave at processing is the one the report shows.
    let number = sb
        .world()
        .division(DIVISION)
        .unwrap()
        .sales_invoices
        .iter()
        .find(|i| i.journal == "72")
        .and_then(|i| i.invoice_number)
        .expect("the entry journal's invoice, numbered at processing");
    assert_eq!(
        verdict(&report, Fact::NumberingAtEntry),
        &Verdict::Contradicted(format!(
            "journal 72: the create answer had InvoiceNumber null; {number} came at processing"
        )),
        "{report}"
    );
    let contradicted = |f: Fact, observed: &str| {
        let v = verdict(&report, f);
        assert!(
            v.is_contradicted() && v.to_string().contains(observed),
            "{f:?}: {v}\n{report}"
        );
    };
    contradicted(Fact::TooEarlyRefresh, "Reason \"RefreshTooSoon\"");
    contradicted(Fact::ResetUnits, "is epoch seconds, not milliseconds");
    contradicted(Fact::TrimItems, "Unknown function 'trim' at position 0.");
    contradicted(Fact::TrimVatCodes, "Unknown function 'trim'");
    contradicted(
        Fact::SubscriptionFilter,
        "This $filter parameter is not supported for this resource",
    );
    contradicted(Fact::MatchingTopic, "no delivery within 1 s");
    // What the switches leave alone is still confirmed.
    for f in [
        Fact::NumberingAtProcessing,
        Fact::ProcessAnswer,
        Fact::AmsterdamDates,
        Fact::LinePrices,
        Fact::TopicsAccepted,
        Fact::MandatoryFiltering,
        Fact::AcceptJson,
        Fact::PageSize,
    ] {
        assert!(verdict(&report, f).is_confirmed(), "{f:?}\n{report}");
    }
    assert_calls_match(&sb, &report);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn read_only_makes_no_write_and_spends_ten_calls() {
    let sb = sandbox(Beliefs::default()).await;
    let opts = options(&sb, &[]);
    let report = smoke::run(
        &opts,
        &Browser {
            sb: sb.clone(),
            pay: None,
        },
    )
    .await
    .expect("the smoke run");
    for (fact, v) in &report.verdicts {
        if !fact.checkable() {
            assert!(matches!(v, Verdict::NotChecked(_)), "{fact:?}: {v}");
        } else if fact.writes() {
            assert!(
                matches!(v, Verdict::NotChecked(why) if why.starts_with("needs --write")),
                "{fact:?}: {v}"
            );
        } else {
            assert!(v.is_confirmed(), "{fact:?}: {v}\n{report}");
        }
    }
    let writes: Vec<String> = sb
        .requests()
        .iter()
        .filter(|r| r.is_api() && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    // Token (code, too-early refresh), Me, Divisions, two code probes, subscriptions, the unfiltered and the
    // Accept probes, one page of customers.
    assert_eq!(
        (report.token_calls(), report.api_calls()),
        (2, 8),
        "{report}"
    );
    assert_calls_match(&sb, &report);
    assert!(report.left_behind.is_empty() && report.recorded.is_empty());
}

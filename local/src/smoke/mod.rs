//! `cargo run -- smoke`: first contact with a real Exact. Signs in with a real app (the authorize URL printed, the
//! redirect caught on localhost), then checks the beliefs of `docs/exact-online.md` against the administration the
//! user had open — read-only unless `--write` — and reports each as confirmed, contradicted (with what was seen)
//! or not checked, with the Exact calls spent. Every Exact call goes through the `exact` crate (its [`exact::probe`]
//! module for the checks); tokens stay inside it.

mod facts;
mod listener;
mod options;
mod record;
mod report;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exact::probe::{CodeList, CodeMatch, CodeRow, CreatedInvoice, Seen, Subscribed};
use exact::recorded::{Exchange, Recorder, Request, Response};
use exact::{CallStats, Clock, ExactAuth, ExactClient, ExactConfig, ExactError, SystemClock};
use mapping::{Division, ExactGuid};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

pub use facts::{Fact, JournalRun, Verdict, Watch};
pub use options::{Options, USAGE};
pub use record::FIXTURE_WEBHOOK_SECRET;
pub use report::Report;

/// The person running the smoke test (the terminal), or a test standing in for them.
pub trait Operator: Send + Sync {
    /// Where to sign in; the listener for the redirect is up before this is called.
    fn sign_in_at(&self, authorize_url: &Url);
    /// A line of progress.
    fn say(&self, line: &str);
    /// Asks for a payment to be matched by hand in Exact now; the watch for its webhook starts when this returns.
    fn match_a_payment(&self, wait: Duration) -> impl Future<Output = ()> + Send;
}

/// The terminal.
pub struct Console;

impl Operator for Console {
    fn sign_in_at(&self, authorize_url: &Url) {
        println!(
            "Open this URL in a browser and sign in to Exact (the administration you have open is checked):"
        );
        println!("  {authorize_url}");
    }
    fn say(&self, line: &str) {
        println!("{line}");
    }
    async fn match_a_payment(&self, wait: Duration) {
        println!(
            "Now match a payment to an open invoice by hand in Exact (no new bank entry). Waiting up to {} s for \
             a webhook…",
            wait.as_secs()
        );
    }
}

/// The test customer, found again on the next run rather than created each time.
pub const SMOKE_CUSTOMER: &str = "PSA-Exact smoke test";
/// The amount of the test invoice's first line; the second line takes it back, so the invoice is zero.
pub const LINE_AMOUNT: f64 = 10.0;
/// The whole run's calls must fit here (rate-limit waits included).
const RUN_BUDGET: Duration = Duration::from_secs(15 * 60);

/// What the `--write` part observed.
#[derive(Default)]
struct Written {
    /// Why the invoice facts could not be checked, if so.
    skipped: Option<String>,
    runs: Vec<JournalRun>,
    entry: Option<usize>,
    processing: Option<usize>,
    first_created: Option<Seen<CreatedInvoice>>,
    invoices: Vec<ExactGuid>,
    subscriptions: Option<Vec<(String, Result<Subscribed, ExactError>)>>,
    watch: Option<Watch>,
    left_behind: Vec<String>,
}

/// Runs the smoke test. Fails only when it cannot sign in or learn the administration; every check's failure is a
/// verdict.
pub async fn run<O: Operator>(opts: &Options, op: &O) -> Result<Report, String> {
    let recorder = Recorder::new();
    let stats = CallStats::new();
    let http = exact::http_client(exact::DEFAULT_REQUEST_TIMEOUT);
    let mut cfg = ExactConfig::new(
        opts.client_id.clone(),
        opts.client_secret.clone(),
        opts.redirect_uri.clone(),
    );
    cfg.base_url_override = opts.base_url.clone();
    let auth =
        ExactAuth::new(http.clone(), cfg.clone(), stats.clone()).with_recorder(recorder.clone());

    // Sign in: the state ties the redirect to this run.
    let state = format!("smoke-{}", ExactGuid::new_random());
    let mut listener = listener::bind(
        opts.listen,
        opts.redirect_uri.path(),
        &state,
        opts.webhook_secret.clone(),
    )
    .await?;
    op.say(&format!(
        "Listening on http://{} for the redirect to {}",
        listener.addr, opts.redirect_uri
    ));
    op.sign_in_at(&auth.authorize_url(opts.country, &state));
    let code = listener.code(opts.sign_in_timeout).await?;
    let tokens = auth
        .exchange_code(opts.country, &code)
        .await
        .map_err(|e| format!("exchanging the authorization code: {e}"))?;

    // A refresh right away must be refused as too early; should Exact refresh anyway, its new pair is the one to use.
    let early = auth
        .refresh_detailed(opts.country, &tokens.refresh_token)
        .await;
    let access: SecretString = match &early {
        Ok(t) => t.access_token.clone(),
        Err(_) => tokens.access_token.clone(),
    };

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deadline = clock.now_ms() + RUN_BUDGET.as_millis() as i64;
    let limiter = exact::RateLimiter::new();
    let host = cfg.host_for(opts.country);
    let client = |division: Division| {
        ExactClient::new(
            http.clone(),
            host.clone(),
            division,
            access.clone(),
            limiter.clone(),
            stats.clone(),
            clock.clone(),
        )
        .with_deadline(deadline)
        .with_recorder(recorder.clone())
    };
    // `current/Me` has no division in its path: the client's division is only a placeholder there.
    let placeholder = Division::new(1).map_err(|e| e.to_string())?;
    let me = client(placeholder)
        .me()
        .await
        .map_err(|e| format!("reading current/Me: {e}"))?;
    let division = match opts.division {
        Some(d) => Division::new(d).map_err(|e| format!("--division: {e}"))?,
        None => me.current_division,
    };
    let exact = client(division);
    let info = exact
        .division_info(division)
        .await
        .map_err(|e| format!("reading administration {division}: {e}"))?
        .ok_or_else(|| format!("administration {division} is not one this user may use"))?;
    op.say(&format!(
        "Checking administration {division} \"{}\"{}",
        info.description.as_deref().unwrap_or(""),
        if opts.write { " (with --write)" } else { "" }
    ));

    // Read-only checks: one call each, plus a second only where the first found nothing.
    let items = exact
        .probe_code(CodeList::Items, &opts.item, CodeMatch::Trimmed)
        .await;
    let items_exact = if found_nothing(&items) {
        Some(
            exact
                .probe_code(CodeList::Items, &opts.item, CodeMatch::Exact)
                .await,
        )
    } else {
        None
    };
    let vat = exact
        .probe_code(CodeList::VatCodes, &opts.vat_code, CodeMatch::Trimmed)
        .await;
    let vat_exact = if found_nothing(&vat) {
        Some(
            exact
                .probe_code(CodeList::VatCodes, &opts.vat_code, CodeMatch::Exact)
                .await,
        )
    } else {
        None
    };
    let subscriptions = exact.list_webhook_subscriptions().await;
    let unfiltered = exact.probe_items_without_filter().await;
    let accept = exact.probe_without_accept().await;
    let page = exact.probe_accounts_page().await;
    let rate = [&items, &vat]
        .into_iter()
        .find_map(|r| r.as_ref().ok().map(|s| s.rate))
        .or_else(|| page.as_ref().ok().map(|s| s.rate));
    let now_ms = clock.now_ms();

    let item_id = [Some(&items), items_exact.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|r| r.as_ref().ok().and_then(|s| s.value.first().map(|c| c.id)));
    let written = if opts.write {
        write_checks(opts, op, &exact, &listener, item_id).await
    } else {
        Written::default()
    };

    let not_written = |fact: Fact, v: Verdict| -> Verdict {
        match (&written.skipped, opts.write) {
            (_, false) if fact.writes() => Verdict::NotChecked("needs --write".into()),
            (Some(why), true) if fact.writes() => Verdict::NotChecked(why.clone()),
            _ => v,
        }
    };
    let entry = written.entry.map(|i| &written.runs[i]);
    let processing = written.processing.map(|i| &written.runs[i]);
    let all_runs: Vec<&JournalRun> = written.runs.iter().collect();
    let first_lines = processing
        .or(entry)
        .and_then(|r| r.after.as_ref().ok().and_then(|a| a.as_ref()));
    let verdicts = vec![
        (Fact::TooEarlyRefresh, facts::too_early(&early)),
        (Fact::ResetUnits, facts::reset_units(rate.as_ref(), now_ms)),
        (
            Fact::TrimItems,
            facts::trimmed_code(CodeList::Items, &opts.item, &items, items_exact.as_ref()),
        ),
        (
            Fact::TrimVatCodes,
            facts::trimmed_code(CodeList::VatCodes, &opts.vat_code, &vat, vat_exact.as_ref()),
        ),
        (
            Fact::SubscriptionFilter,
            facts::subscription_filter(&subscriptions),
        ),
        (
            Fact::MandatoryFiltering,
            facts::mandatory_filtering(&unfiltered),
        ),
        (Fact::AcceptJson, facts::accept_json(&accept)),
        (Fact::PageSize, facts::page_size(&page, &host)),
        (
            Fact::NumberingAtEntry,
            not_written(Fact::NumberingAtEntry, facts::numbering_at_entry(entry)),
        ),
        (
            Fact::NumberingAtProcessing,
            not_written(
                Fact::NumberingAtProcessing,
                facts::numbering_at_processing(processing),
            ),
        ),
        (
            Fact::ProcessAnswer,
            not_written(Fact::ProcessAnswer, facts::process_answer(&all_runs)),
        ),
        (
            Fact::AmsterdamDates,
            not_written(
                Fact::AmsterdamDates,
                facts::amsterdam_dates(
                    written
                        .first_created
                        .as_ref()
                        .and_then(|s| s.value.created_wall_ms),
                    written.first_created.as_ref().and_then(|s| s.http_date_ms),
                ),
            ),
        ),
        (
            Fact::LinePrices,
            not_written(
                Fact::LinePrices,
                facts::line_prices(first_lines, LINE_AMOUNT),
            ),
        ),
        (
            Fact::TopicsAccepted,
            match opts.write {
                false => Verdict::NotChecked("needs --write and --webhook-url".into()),
                true => facts::topics_accepted(written.subscriptions.as_deref()),
            },
        ),
        (
            Fact::MatchingTopic,
            facts::matching_topic(&written.watch.clone().unwrap_or(Watch::Skipped(
                "needs --write, --webhook-url routed to this listener and --watch SECONDS".into(),
            ))),
        ),
        (Fact::EmailAttachments, facts::email_attachments()),
    ];

    let mut exchanges = recorder.exchanges();
    exchanges.extend(listener.deliveries().into_iter().map(delivery_exchange));
    let recorded = match &opts.record {
        Some(dir) => {
            let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
            record::write(dir, &date, exchanges)?
                .into_iter()
                .map(|p| p.display().to_string())
                .collect()
        }
        None => Vec::new(),
    };
    Ok(Report {
        division: division.get(),
        division_name: info.description,
        wrote: opts.write,
        verdicts,
        calls: stats.snapshot(),
        left_behind: written.left_behind,
        recorded,
    })
}

/// Whether a `trim(Code)` probe found no row (or was refused): then a plain `Code eq` tells why.
fn found_nothing(r: &Result<Seen<Vec<CodeRow>>, ExactError>) -> bool {
    r.as_ref().is_ok_and(|s| s.value.is_empty()) || r.is_err()
}

/// A delivery the listener verified, as a fixture (the recorder signs it again with the fixture secret).
fn delivery_exchange(d: listener::Delivery) -> Exchange {
    Exchange {
        source: None,
        operation: "webhook_delivery".into(),
        request: Request {
            method: "POST".into(),
            path: "/exact/webhooks".into(),
            query: None,
            body: None,
            body_text: Some(d.body),
        },
        response: Response {
            status: 200,
            headers: Default::default(),
            body: None,
            body_text: None,
        },
        webhook_secret: None,
        expect: None,
    }
}

/// `--write`: subscribe the connector's topics (with `--webhook-url`), find or create the test customer, make,
/// process and read back a zero-amount invoice per journal, watch for a matched payment (with `--watch`), then
/// remove what can be removed.
async fn write_checks<O: Operator>(
    opts: &Options,
    op: &O,
    exact: &ExactClient,
    listener: &listener::Listener,
    item: Option<ExactGuid>,
) -> Written {
    let mut w = Written::default();
    let mut created_subscriptions = Vec::new();
    if let Some(url) = &opts.webhook_url {
        let mut results = Vec::new();
        for topic in connector::connect::WEBHOOK_TOPICS {
            let r = exact.probe_subscribe(topic, url.as_str()).await;
            if let Ok(Subscribed::Created(id)) = &r {
                created_subscriptions.push(*id);
            }
            results.push(((*topic).to_owned(), r));
        }
        w.subscriptions = Some(results);
    }

    match item {
        None => {
            w.skipped = Some(format!(
                "item {} not found: give an existing one with --item",
                opts.item
            ))
        }
        Some(item) => match customer(exact).await {
            Err(e) => w.skipped = Some(format!("the test customer: {e}")),
            Ok((account, was)) => {
                w.left_behind
                    .push(format!("customer \"{SMOKE_CUSTOMER}\" ({was})"));
                let journals = std::iter::once((opts.journal.clone(), false))
                    .chain(opts.entry_journal.clone().map(|j| (j, true)));
                for (journal, at_entry) in journals {
                    match invoice_run(opts, exact, account, item, &journal).await {
                        Ok((run, created)) => {
                            w.invoices.push(created.value.invoice_id);
                            match &run.after {
                                Ok(Some(a))
                                    if a.status == Some(exact::INVOICE_STATUS_PROCESSED) =>
                                {
                                    w.left_behind.push(format!(
                                        "invoice {} (journal {journal}, processed, zero amount, not sent)",
                                        a.invoice_number.map_or("?".into(), |n| n.to_string())
                                    ));
                                }
                                _ => {}
                            }
                            if w.first_created.is_none() {
                                w.first_created = Some(created);
                            }
                            w.runs.push(run);
                            let i = w.runs.len() - 1;
                            if at_entry {
                                w.entry = Some(i);
                            } else {
                                w.processing = Some(i);
                            }
                        }
                        Err(e) if w.runs.is_empty() => {
                            w.skipped = Some(format!("journal {journal}: {e}"));
                            break;
                        }
                        Err(e) => {
                            op.say(&format!("journal {journal}: {e}"));
                        }
                    }
                }
            }
        },
    }

    w.watch = Some(watch(opts, op, listener, &created_subscriptions, &w.invoices).await);
    for id in created_subscriptions {
        if let Err(e) = exact.delete_webhook_subscription(id).await {
            w.left_behind.push(format!(
                "webhook subscription {id} (removing it failed: {e})"
            ));
        }
    }
    w
}

/// The test customer: an invoiceable one found by name, or a new one. Answers its ID and which it was.
async fn customer(exact: &ExactClient) -> Result<(ExactGuid, &'static str), ExactError> {
    let found = exact.find_accounts_by_name(SMOKE_CUSTOMER).await?;
    if let Some(a) = found.iter().find(|a| a.can_be_invoiced()) {
        return Ok((a.id, "reused"));
    }
    let id = exact
        .create_account(
            &json!({ "Name": SMOKE_CUSTOMER, "Status": mapping::ACCOUNT_STATUS_CUSTOMER }),
        )
        .await?;
    Ok((id, "created"))
}

/// One zero-amount invoice on `journal`: create (the number and `Created` as answered), process without e-mail,
/// read back once. An invoice that could not be processed is deleted again.
async fn invoice_run(
    opts: &Options,
    exact: &ExactClient,
    account: ExactGuid,
    item: ExactGuid,
    journal: &str,
) -> Result<(JournalRun, Seen<CreatedInvoice>), String> {
    let today = exact::amsterdam_date(chrono::Utc::now());
    let stamp = chrono::Utc::now().format("%y%m%d%H%M%S");
    let line = |amount: f64, text: &str| {
        json!({
            "Item": item, "Description": text, "Quantity": 1.0,
            "UnitPrice": amount, "NetPrice": amount, "VATCode": opts.vat_code,
        })
    };
    let body = json!({
        "Journal": journal,
        "Type": mapping::SALES_INVOICE_TYPE,
        "OrderedBy": account,
        "InvoiceTo": account,
        "OrderDate": today,
        "Description": "PSA-Exact smoke test: zero amount, not sent",
        "YourRef": format!("SMOKE-{stamp}-{journal}").chars().take(30).collect::<String>(),
        "SalesInvoiceLines": [
            line(LINE_AMOUNT, "Smoke test line"),
            line(-LINE_AMOUNT, "Smoke test line, taken back"),
        ],
    });
    let created = exact
        .probe_create_invoice(&body)
        .await
        .map_err(|e| format!("creating the test invoice: {e}"))?;
    let id = created.value.invoice_id;
    let processed = exact
        .probe_process_invoice(&mapping::printed_invoice_payload(id, false, today))
        .await
        .map(|s| s.value);
    let after = match &processed {
        Ok(_) => exact.probe_invoice_lines(id).await,
        Err(_) => {
            // Not processed: it can still go.
            let _ = exact.delete_sales_invoice(id).await;
            Ok(None)
        }
    };
    Ok((
        JournalRun {
            journal: journal.to_owned(),
            created_number: created.value.invoice_number,
            processed,
            after,
        },
        created,
    ))
}

/// With `--watch`: after the operator matched a payment, the deliveries on the connector's topics that are not
/// about the smoke test's own invoices.
async fn watch<O: Operator>(
    opts: &Options,
    op: &O,
    listener: &listener::Listener,
    ours: &[ExactGuid],
    own_invoices: &[ExactGuid],
) -> Watch {
    if opts.watch.is_zero() {
        return Watch::Skipped(
            "needs --watch SECONDS (with --webhook-url routed to this listener)".into(),
        );
    }
    if opts.webhook_secret.is_none() {
        return Watch::Skipped("needs --webhook-secret to verify deliveries".into());
    }
    if ours.is_empty() {
        return Watch::Skipped(
            "no subscription was made here (they existed already and deliver elsewhere)".into(),
        );
    }
    let start = Instant::now();
    op.match_a_payment(opts.watch).await;
    let own: Vec<String> = own_invoices.iter().map(|g| g.to_string()).collect();
    loop {
        let seen: Vec<(String, u64)> = listener
            .deliveries()
            .into_iter()
            .filter(|d| d.at >= start && !own.iter().any(|k| k.eq_ignore_ascii_case(&d.event.key)))
            .map(|d| (d.event.topic, d.at.duration_since(start).as_secs()))
            .collect();
        if !seen.is_empty() || start.elapsed() >= opts.watch {
            return Watch::Ran {
                deliveries: seen,
                waited_s: opts.watch.as_secs(),
                unverified: listener.unverified(),
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

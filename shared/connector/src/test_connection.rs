//! Test connection: check the settings against the administration, process a test invoice, save the settings.
//!
//! `POST /connections/{id}/exact/test`. The checks run first (connection, item, journal, every VAT code), each
//! reported with a message a user can act on. When all pass, a test invoice goes to a test customer of our own
//! (found or created once, then remembered) with the connected user's e-mail as its contact, and is processed —
//! e-mailed by Exact when sending is on. Only a test that got that far saves the settings, with the Exact IDs
//! resolved here (item, VAT codes), so a push needs no lookups.
//!
//! Exact calls (measured against the sandbox, journal numbering at processing): a first test in a fresh
//! administration 8 (item, journal and VAT codes — one query for all codes —, account lookup, account and contact
//! created, invoice created and processed); a later test 6 (customer cached; the invoice number read back); a
//! failing check 3. The test never spends more than [`MAX_EXACT_CALLS`]: the invoice number (which Exact's
//! processing answer lacks) is read only while that budget allows, so a first test answers the invoice ID and
//! leaves the number to Exact; likewise an invoice Exact refused to process is deleted only within the budget.
//!
//! A dry run (`"dry_run": true`) runs the same checks plus the customer rules on the test customer and the payment
//! condition, with GET calls only (5, in one concurrent round): it creates nothing in Exact, writes nothing to the
//! store and saves no settings. What Exact's API cannot answer (the administration's default payment condition) is
//! reported as an unverified check (`docs/exact-online.md` §5.8).

use chrono::{DateTime, NaiveDate, Utc};
use exact::{AccountTerms, Page, PaymentCondition, VAT_CODE_FIELDS, VatCode};
use exact::{ErrorKind, ExactClient, ExactError, Filter, Item, JOURNAL_TYPE_SALES, Journal, Lit};
use mapping::{
    AccountPayload, ConnectionId, ContactPayload, Decimal, ExactGuid, SALES_INVOICE_TYPE,
    SalesInvoiceLinePayload, SalesInvoicePayload, Settings, printed_invoice_payload,
};
use serde::Serialize;
use store::{ConnectionRecord, MappingKey, SettingsRecord, StoreError, TaxCategoryRecord};

use crate::app::App;
use crate::errors::from_exact;
use crate::http::ApiError;
use crate::tokens::{self, Session};

/// The test never makes more Exact calls than this (token calls included).
pub const MAX_EXACT_CALLS: u64 = 8;
/// The name of the test customer in Exact: stable, so later tests find and reuse it.
pub const TEST_ACCOUNT_NAME: &str = "psa-exact test customer";
/// The mapping key the test customer's ID is cached under. PSA company ids are trimmed, so one starting with a
/// space can never collide with a real company's key.
const TEST_ACCOUNT_KEY: &str = " psa-exact-test-customer";
const TEST_INVOICE_DESCRIPTION: &str = "psa-exact connection test";
const TEST_LINE_DESCRIPTION: &str = "1 - Connection test";
const TEST_LINE_NOTES: &str =
    "Test invoice sent by the PSA's Exact Online connector to check the settings; nothing is due.";

// The answer's types list their fields in alphabetical order: the order the answer has always had on the wire
// (serde_json's maps sort their keys), so it keeps its bytes.

/// The test's answer (`docs/openapi.json`, `TestResult`): 200 when it passed (settings saved), 422 when a check or
/// Exact refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    pub checks: Vec<Check>,
    pub division: u32,
    pub division_name: String,
    /// A dry run: the checks only, with read-only calls (nothing created in Exact, nothing saved).
    pub dry_run: bool,
    /// Why the test failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TestError>,
    /// Exact calls the test made (token calls included).
    pub exact_calls: u64,
    pub ok: bool,
    /// Whether the settings were saved: only a full test that passed saves them.
    pub settings_saved: bool,
    /// The test invoice, when one was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_invoice: Option<TestInvoice>,
}

impl TestResult {
    pub fn status(&self) -> u16 {
        if self.ok { 200 } else { 422 }
    }
}

/// One reported check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// For `tax_category`: which category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The settings field the check is about (`item_code`, `tax_categories[1].exact_vat_code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// `connection`, `item`, `journal`, `tax_code`, `tax_category`, `test_invoice`; a dry run adds
    /// `payment_condition` and `test_customer`.
    pub name: &'static str,
    pub ok: bool,
    /// `false` when the check could not be verified through Exact's API (the message says what is unknown); absent
    /// when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// Why the test failed: a check (`check_failed`), or Exact's refusal with Exact's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestError {
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_message: Option<String>,
    pub message: String,
}

impl From<ApiError> for TestError {
    fn from(e: ApiError) -> Self {
        TestError {
            code: e.code,
            exact_message: e.exact_message,
            message: e.message,
        }
    }
}

/// The test invoice as the answer shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TestInvoice {
    /// Created and processed (and e-mailed when sending is on).
    Processed {
        emailed: bool,
        emailed_to: Option<String>,
        exact_invoice_id: ExactGuid,
        exact_invoice_number: Option<i64>,
    },
    /// Processed, but Exact could not create its document or e-mail: `status` is `processed`.
    ProcessedWithErrors {
        exact_invoice_id: ExactGuid,
        exact_invoice_number: Option<i64>,
        status: &'static str,
    },
    /// Exact refused to process it: `status` is `deleted` (discarded) or `open` (left in Exact).
    NotProcessed {
        exact_invoice_id: ExactGuid,
        status: &'static str,
    },
}

impl Check {
    fn new(name: &'static str, field: Option<String>, ok: bool, message: String) -> Self {
        Check {
            category: None,
            field,
            message,
            name,
            ok,
            verified: None,
        }
    }
}

/// `POST /connections/{id}/exact/test` with the raw request body.
#[tracing::instrument(name = "test_connection", skip_all, fields(connection_id = %conn))]
pub async fn run(app: &App, conn: &ConnectionId, body: &[u8]) -> Result<TestResult, ApiError> {
    let settings = Settings::parse_json(body)
        .map_err(|e| ApiError::bad_field(e.field.clone(), e.code, e.message))?;
    let dry_run = dry_run_flag(body)?;
    let session = tokens::session(app, conn).await?;
    let outcome = if dry_run {
        dry(app, &session, &settings).await
    } else {
        test(app, &session, &settings).await
    };
    let exact_calls = session.stats.total();
    tracing::info!(
        division = session.connection.division.get(),
        dry_run,
        passed = outcome.as_ref().map(|o| o.ok).ok(),
        exact_calls,
        "connection tested"
    );
    let mut outcome = outcome?;
    outcome.exact_calls = exact_calls;
    Ok(outcome)
}

/// `dry_run` of the body: absent or `null` is `false`; anything but a boolean is a 400 naming it. The body is
/// known to be a JSON object (the settings parsed).
fn dry_run_flag(body: &[u8]) -> Result<bool, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match value.get("dry_run") {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_field(
            "dry_run",
            "wrong_type",
            "dry_run must be a boolean (true: check the settings with read-only calls, create nothing, save nothing)",
        )),
    }
}

/// What the checks read from Exact: the item, the journal, the VAT codes.
struct Lookups {
    item: Option<Item>,
    journal: Option<Journal>,
    vat: Vec<VatCode>,
}

/// Three independent lookups: one query each (all VAT codes in one `or` filter).
async fn lookups(exact: &ExactClient, settings: &Settings) -> Result<Lookups, ExactError> {
    let codes = distinct_vat_codes(settings);
    let (item, journal, vat) = tokio::join!(
        exact.find_item(&settings.item_code),
        exact.find_journal(&settings.journal_code),
        find_vat_codes(exact, &codes),
    );
    Ok(Lookups {
        item: item?,
        journal: journal?,
        vat: vat?,
    })
}

async fn test(app: &App, session: &Session, settings: &Settings) -> Result<TestResult, ApiError> {
    let c = &session.connection;
    let exact = &session.exact;
    let now = app.now();
    let found = lookups(exact, settings)
        .await
        .map_err(|e| from_exact(&e, app))?;
    let checks = settings_checks(c, settings, &found, now);
    let Lookups { item, vat, .. } = found;

    let failed: Vec<&Check> = checks.iter().filter(|k| !k.ok).collect();
    let Some(item) = item.filter(|_| failed.is_empty()) else {
        let error = check_failed(&failed);
        return Ok(failure(c, checks, error, None));
    };
    let mut checks = checks;

    match test_invoice(app, session, settings, &item).await {
        Ok(done) => {
            let record = settings_record(settings, c, item.id, &vat, now);
            app.state.put_settings(&c.connection_id, &record).await?;
            let emailed_to = done.emailed.then(|| c.connected_user_email.clone());
            checks.push(Check::new(
                "test_invoice",
                None,
                true,
                invoice_success_text(&done, emailed_to.as_deref()),
            ));
            Ok(TestResult {
                checks,
                division: c.division.get(),
                division_name: c.division_name.clone(),
                dry_run: false,
                error: None,
                exact_calls: 0,
                ok: true,
                settings_saved: true,
                test_invoice: Some(TestInvoice::Processed {
                    emailed: done.emailed,
                    emailed_to,
                    exact_invoice_id: done.invoice_id,
                    exact_invoice_number: done.number,
                }),
            })
        }
        Err(TestInvoiceFailure::Api(e)) => Err(e),
        Err(TestInvoiceFailure::Refused { error, invoice }) => {
            checks.push(Check::new(
                "test_invoice",
                None,
                false,
                error.message.clone(),
            ));
            Ok(failure(c, checks, error.into(), invoice))
        }
    }
}

/// `check_failed` naming the failed checks' fields.
fn check_failed(failed: &[&Check]) -> TestError {
    let names: Vec<String> = failed
        .iter()
        .map(|k| k.field.clone().unwrap_or_else(|| k.name.to_owned()))
        .collect();
    let message = format!(
        "{} failed: {}. Correct the settings (or the administration in Exact) and test again; nothing was \
         created in Exact and the saved settings are unchanged.",
        if names.len() == 1 {
            "1 check".to_owned()
        } else {
            format!("{} checks", names.len())
        },
        names.join(", ")
    );
    TestError {
        code: "check_failed",
        exact_message: None,
        message,
    }
}

// ---- the dry run ----------------------------------------------------------------------------------------------

/// What the dry run learnt of the test customer.
enum TestCustomerLook {
    /// The remembered ID, and the account when Exact still has it.
    Cached(Option<AccountTerms>),
    /// Not remembered: the accounts with its name.
    Found(Vec<AccountTerms>),
}

impl TestCustomerLook {
    /// The account a full test would use, when there is one.
    fn account(&self) -> Option<&AccountTerms> {
        match self {
            TestCustomerLook::Cached(a) => a.as_ref(),
            // Names are not unique: the full test takes the oldest key, so does this.
            TestCustomerLook::Found(list) => list.iter().min_by_key(|a| a.id),
        }
    }
}

/// The dry run: the same checks as the test plus the payment condition and the test customer, with GET calls
/// only (one round of concurrent queries: item, journal, VAT codes, payment conditions, test customer). Creates
/// nothing in Exact, writes nothing to the store, saves no settings.
async fn dry(app: &App, session: &Session, settings: &Settings) -> Result<TestResult, ApiError> {
    let c = &session.connection;
    let exact = &session.exact;
    let cached = app
        .state
        .get_mapping(&c.connection_id, c.division, &account_key())
        .await?;
    let customer = async {
        match cached {
            Some(id) => exact.account_terms(id).await.map(TestCustomerLook::Cached),
            None => exact
                .find_account_terms_by_name(TEST_ACCOUNT_NAME)
                .await
                .map(TestCustomerLook::Found),
        }
    };
    let (found, conditions, customer) = tokio::join!(
        lookups(exact, settings),
        exact.payment_conditions(),
        customer
    );
    let exact_err = |e: ExactError| from_exact(&e, app);
    let (found, conditions, customer) = (
        found.map_err(exact_err)?,
        conditions.map_err(exact_err)?,
        customer.map_err(exact_err)?,
    );
    let admin = administration(c);
    let mut checks = settings_checks(c, settings, &found, app.now());
    checks.push(customer_check(&customer, &admin));
    checks.push(payment_condition_check(
        &conditions,
        customer.account(),
        &admin,
    ));
    let failed: Vec<&Check> = checks.iter().filter(|k| !k.ok).collect();
    let error = (!failed.is_empty()).then(|| check_failed(&failed));
    Ok(TestResult {
        checks,
        division: c.division.get(),
        division_name: c.division_name.clone(),
        dry_run: true,
        ok: error.is_none(),
        error,
        exact_calls: 0,
        settings_saved: false,
        test_invoice: None,
    })
}

/// The customer rules (README "Behaviour a PSA must know": an account is invoiced only when it is a customer,
/// status `C`, and not blocked) applied to the test customer a full test would use.
fn customer_check(look: &TestCustomerLook, admin: &str) -> Check {
    let name = format!("\"{TEST_ACCOUNT_NAME}\"");
    let (ok, message) = match (look, look.account()) {
        (_, Some(a)) if !a.can_be_invoiced() => (
            false,
            format!(
                "The test customer {name} in administration {admin} cannot be invoiced: it is {}. Make it a \
                 customer that is not blocked in Exact (or delete it there: a full test then creates it anew).",
                if a.blocked {
                    "blocked".to_owned()
                } else {
                    format!(
                        "not a customer (relation type '{}')",
                        a.status.as_deref().unwrap_or("")
                    )
                }
            ),
        ),
        (TestCustomerLook::Cached(_), Some(_)) => (
            true,
            format!(
                "The test customer {name} exists in administration {admin} and can be invoiced."
            ),
        ),
        (TestCustomerLook::Found(_), Some(_)) => (
            true,
            format!(
                "The test customer {name} exists in administration {admin} and can be invoiced; a full test \
                 reuses it."
            ),
        ),
        (TestCustomerLook::Cached(None), None) => (
            true,
            format!(
                "The test customer {name} that an earlier test created is no longer in administration {admin}. \
                 A full test is refused once by Exact and forgets it; the test after that creates it anew."
            ),
        ),
        (_, None) => (
            true,
            format!(
                "The test customer {name} does not exist in administration {admin} yet; a full test creates it \
                 (a customer, with the connected user as its contact)."
            ),
        ),
    };
    Check::new("test_customer", None, ok, message)
}

/// Exact refuses to process an invoice for a customer without a payment condition when the administration has no
/// default one (`docs/exact-online.md` §5.7). Exact's API answers the conditions and a customer's own condition;
/// the administration's default is not known to be readable, so without a customer condition the check says it
/// is unverified rather than passing it.
fn payment_condition_check(
    conditions: &Page<PaymentCondition>,
    customer: Option<&AccountTerms>,
    admin: &str,
) -> Check {
    let list = &conditions.items;
    let described_pc = |pc: &PaymentCondition| described(&pc.code, pc.description.as_deref());
    let check = |ok: bool, verified: bool, message: String| Check {
        verified: (!verified).then_some(false),
        ..Check::new("payment_condition", None, ok, message)
    };
    if list.is_empty() {
        return check(
            false,
            true,
            format!(
                "Administration {admin} has no payment conditions, so Exact refuses to process invoices for \
                 customers without one. Create a payment condition in Exact (Cash flow > Payment conditions) and \
                 make it the administration's default."
            ),
        );
    }
    match customer.and_then(AccountTerms::payment_condition) {
        Some(code) => match list.iter().find(|pc| pc.code.eq_ignore_ascii_case(code)) {
            Some(pc) => check(
                true,
                true,
                format!(
                    "The test customer has payment condition {}; Exact takes it for the test invoice.",
                    described_pc(pc)
                ),
            ),
            // More conditions than one page: Exact keeps an account's condition valid, so it exists.
            None if conditions.next.is_some() => check(
                true,
                true,
                format!(
                    "The test customer has payment condition '{code}'; Exact takes it for the test invoice."
                ),
            ),
            None => check(
                false,
                true,
                format!(
                    "The test customer's payment condition '{code}' is not among the payment conditions of \
                     administration {admin}. Choose an existing one on the customer in Exact."
                ),
            ),
        },
        None => check(
            true,
            false,
            format!(
                "Administration {admin} has payment conditions ({}{}). Whether it has a default sales payment \
                 condition cannot be read through Exact's API; without one, Exact refuses to process invoices for \
                 customers that have no payment condition of their own (the test customer has none). A full test \
                 (without dry_run) proves it.",
                list.iter()
                    .take(3)
                    .map(described_pc)
                    .collect::<Vec<_>>()
                    .join(", "),
                if list.len() > 3 || conditions.next.is_some() {
                    ", …"
                } else {
                    ""
                }
            ),
        ),
    }
}

/// The connection, item, journal and VAT code checks.
fn settings_checks(
    c: &ConnectionRecord,
    settings: &Settings,
    found: &Lookups,
    now: DateTime<Utc>,
) -> Vec<Check> {
    let Lookups { item, journal, vat } = found;
    let admin = administration(c);
    let mut checks = vec![Check::new(
        "connection",
        None,
        true,
        format!(
            "Connected to Exact Online administration {admin} as {}.",
            user_text(c)
        ),
    )];
    checks.push(item_check(settings, item.as_ref(), now, &admin));
    checks.push(journal_check(settings, journal.as_ref(), &admin));
    checks.push(vat_check(
        "tax_code",
        "tax_code".into(),
        None,
        &settings.tax_code,
        vat,
        &admin,
    ));
    for (i, t) in settings.tax_categories.iter().enumerate() {
        checks.push(vat_check(
            "tax_category",
            format!("tax_categories[{i}].exact_vat_code"),
            Some(&t.category),
            &t.exact_vat_code,
            vat,
            &admin,
        ));
    }
    checks
}

fn failure(
    c: &ConnectionRecord,
    checks: Vec<Check>,
    error: TestError,
    invoice: Option<TestInvoice>,
) -> TestResult {
    TestResult {
        checks,
        division: c.division.get(),
        division_name: c.division_name.clone(),
        dry_run: false,
        error: Some(error),
        exact_calls: 0,
        ok: false,
        settings_saved: false,
        test_invoice: invoice,
    }
}

fn administration(c: &ConnectionRecord) -> String {
    if c.division_name.is_empty() {
        c.division.get().to_string()
    } else {
        format!("{} \"{}\"", c.division.get(), c.division_name)
    }
}

fn user_text(c: &ConnectionRecord) -> String {
    match (
        c.connected_user_name.is_empty(),
        c.connected_user_email.is_empty(),
    ) {
        (false, false) => format!("{} <{}>", c.connected_user_name, c.connected_user_email),
        (true, false) => c.connected_user_email.clone(),
        (false, true) => c.connected_user_name.clone(),
        (true, true) => "the connected user".to_owned(),
    }
}

fn described(code: &str, description: Option<&str>) -> String {
    match description.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => format!("'{code}' ({d})"),
        None => format!("'{code}'"),
    }
}

fn item_check(settings: &Settings, item: Option<&Item>, now: DateTime<Utc>, admin: &str) -> Check {
    let code = &settings.item_code;
    let (ok, message) = match item {
        None => (
            false,
            format!(
                "Item '{code}' does not exist in administration {admin}. Check the item code in Exact \
                 (Inventory > Items) or create the item there."
            ),
        ),
        Some(i) if !i.is_sales_item => (
            false,
            format!(
                "Item {} is not a sales item, so it cannot be invoiced. Mark it as a sales item in Exact or \
                 choose another item.",
                described(&i.code, i.description.as_deref())
            ),
        ),
        Some(i) if i.end_date.is_some_and(|end| end <= now) => (
            false,
            format!(
                "Item {} ended on {} and can no longer be invoiced. Choose another item or remove its end date \
                 in Exact.",
                described(&i.code, i.description.as_deref()),
                i.end_date
                    .map(|d| exact::amsterdam_date(d).to_string())
                    .unwrap_or_default()
            ),
        ),
        Some(i) => (
            true,
            format!(
                "Item {} exists and is a sales item.",
                described(&i.code, i.description.as_deref())
            ),
        ),
    };
    Check::new("item", Some("item_code".into()), ok, message)
}

fn journal_check(settings: &Settings, journal: Option<&Journal>, admin: &str) -> Check {
    let code = &settings.journal_code;
    let (ok, message) = match journal {
        None => (
            false,
            format!(
                "Journal '{code}' does not exist in administration {admin}. Use the code of a sales journal \
                 (Financial > Journals in Exact)."
            ),
        ),
        Some(j) if j.journal_type != JOURNAL_TYPE_SALES => (
            false,
            format!(
                "Journal {} is not a sales journal (its type is {}; a sales journal has type {JOURNAL_TYPE_SALES}). \
                 Choose a sales journal.",
                described(&j.code, j.description.as_deref()),
                j.journal_type
            ),
        ),
        Some(j) if j.is_blocked => (
            false,
            format!(
                "Journal {} is blocked in Exact. Unblock it there or choose another sales journal.",
                described(&j.code, j.description.as_deref())
            ),
        ),
        Some(j) => (
            true,
            format!(
                "Journal {} is a sales journal and not blocked.",
                described(&j.code, j.description.as_deref())
            ),
        ),
    };
    Check::new("journal", Some("journal_code".into()), ok, message)
}

fn find_code<'a>(vat: &'a [VatCode], code: &str) -> Option<&'a VatCode> {
    vat.iter()
        .find(|v| v.code.trim().eq_ignore_ascii_case(code.trim()))
}

fn vat_check(
    name: &'static str,
    field: String,
    category: Option<&str>,
    code: &str,
    vat: &[VatCode],
    admin: &str,
) -> Check {
    let subject = match category {
        Some(cat) => format!("Tax category '{cat}': VAT code"),
        None => "Default VAT code".to_owned(),
    };
    let (ok, message) = match find_code(vat, code) {
        None => (
            false,
            format!(
                "{subject} '{code}' does not exist in administration {admin}. Use a VAT code from Exact \
                 (Financial > VAT codes)."
            ),
        ),
        Some(v) if v.is_blocked => (
            false,
            format!(
                "{subject} {} is blocked in Exact. Unblock it there or choose another VAT code.",
                described(&v.code, v.description.as_deref())
            ),
        ),
        Some(v) if !v.usable_for_sales() => (
            false,
            format!(
                "{subject} {} is for purchases only and cannot be used on a sales invoice. Choose a VAT code \
                 for sales (or for both sales and purchases).",
                described(&v.code, v.description.as_deref())
            ),
        ),
        Some(v) => (
            true,
            format!(
                "{subject} {} can be used on sales invoices.",
                described(&v.code, v.description.as_deref())
            ),
        ),
    };
    Check {
        category: category.map(str::to_owned),
        field: Some(field),
        message,
        name,
        ok,
        verified: None,
    }
}

/// The default VAT code and every tax category's code, each once (compared trimmed, case-insensitively, as Exact
/// compares them), in the order given.
fn distinct_vat_codes(settings: &Settings) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let all = std::iter::once(settings.tax_code.as_str()).chain(
        settings
            .tax_categories
            .iter()
            .map(|t| t.exact_vat_code.as_str()),
    );
    for code in all.map(str::trim) {
        if !out.iter().any(|c| c.eq_ignore_ascii_case(code)) {
            out.push(code.to_owned());
        }
    }
    out
}

/// Every code in one query: `trim(Code) eq '2' or trim(Code) eq '1' …` (Exact stores VAT codes padded).
async fn find_vat_codes(exact: &ExactClient, codes: &[String]) -> Result<Vec<VatCode>, ExactError> {
    let Some(filter) = codes
        .iter()
        .map(|c| Filter::eq_trim("Code", Lit::Str(c)))
        .reduce(Filter::or)
    else {
        return Ok(Vec::new());
    };
    exact
        .list(
            "find_vat_codes",
            "vat/VATCodes",
            &filter,
            VAT_CODE_FIELDS,
            None,
        )
        .await
}

fn settings_record(
    settings: &Settings,
    c: &ConnectionRecord,
    item_id: ExactGuid,
    vat: &[VatCode],
    now: DateTime<Utc>,
) -> SettingsRecord {
    let id_of = |code: &str| find_code(vat, code).map(|v| v.id);
    SettingsRecord {
        division: c.division,
        item_code: settings.item_code.clone(),
        item_id,
        journal_code: settings.journal_code.clone(),
        tax_code: settings.tax_code.clone(),
        tax_code_id: id_of(&settings.tax_code),
        tax_categories: settings
            .tax_categories
            .iter()
            .map(|t| TaxCategoryRecord {
                category: t.category.clone(),
                exact_vat_code: t.exact_vat_code.clone(),
                exact_vat_code_id: id_of(&t.exact_vat_code),
            })
            .collect(),
        send_invoice_to_customer: settings.send_invoice_to_customer,
        delivery: settings.delivery,
        saved_at: now,
    }
}

// ---- the test invoice ---------------------------------------------------------------------------------------

/// A processed test invoice.
struct Done {
    invoice_id: ExactGuid,
    number: Option<i64>,
    emailed: bool,
}

fn invoice_success_text(done: &Done, emailed_to: Option<&str>) -> String {
    let which = match done.number {
        Some(n) => format!("Test invoice {n} was created and processed in Exact"),
        None => {
            "A test invoice was created and processed in Exact (Exact shows its number)".to_owned()
        }
    };
    match emailed_to {
        Some(to) if !to.is_empty() => format!("{which}; Exact e-mailed it to {to}."),
        Some(_) => format!("{which}; Exact e-mailed it."),
        None => format!("{which}; it was not e-mailed (sending to the customer is off)."),
    }
}

/// Why the test invoice did not get through.
enum TestInvoiceFailure {
    /// Not a verdict on the settings (rate limit, Exact or AWS unavailable…): answered as the error it is.
    Api(ApiError),
    /// Exact refused a step, or processed the invoice but could not create its document or e-mail. The message
    /// says what to do; `exact_message` is Exact's text.
    Refused {
        error: ApiError,
        /// The test invoice when one was created.
        invoice: Option<TestInvoice>,
    },
}

impl From<ApiError> for TestInvoiceFailure {
    fn from(e: ApiError) -> Self {
        TestInvoiceFailure::Api(e)
    }
}

impl From<StoreError> for TestInvoiceFailure {
    fn from(e: StoreError) -> Self {
        TestInvoiceFailure::Api(e.into())
    }
}

/// A step of the test invoice, for the hint that goes with Exact's refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    FindAccount,
    CreateAccount,
    FindContact,
    CreateContact,
    CreateInvoice,
    ProcessInvoice,
}

impl Step {
    fn code(self) -> &'static str {
        match self {
            Step::FindAccount | Step::CreateAccount => "test_customer_refused",
            Step::FindContact | Step::CreateContact => "test_contact_refused",
            Step::CreateInvoice => "test_invoice_refused",
            Step::ProcessInvoice => "test_invoice_processing_refused",
        }
    }

    /// The possible problems and what to do, per step.
    fn hint(self, email: &str) -> String {
        match self {
            Step::FindAccount | Step::CreateAccount => format!(
                "Exact refused to find or create the test customer \"{TEST_ACCOUNT_NAME}\". Check that the connected \
                 user may create customers (accounts) in this administration and that the app has the CRM scope, \
                 then test again."
            ),
            Step::FindContact | Step::CreateContact => format!(
                "Exact refused to find or create the test contact {email} on the test customer \
                 \"{TEST_ACCOUNT_NAME}\". Check that the connected user may create contacts in this administration, \
                 then test again."
            ),
            Step::CreateInvoice => "Exact refused the test invoice. Possible causes: the item has no revenue G/L \
                 account, the VAT code has no G/L accounts, or the customer or administration has no valid payment \
                 condition. Correct it in Exact (or choose other codes) and test again."
                .to_owned(),
            Step::ProcessInvoice => "Exact refused to process the test invoice. The usual cause is a missing payment \
                 condition: set a default sales payment condition for the administration in Exact, or a payment \
                 condition on the customer account. Other causes: no open financial period or year for today's \
                 date. Correct it in Exact and test again."
                .to_owned(),
        }
    }
}

/// Exact's refusal of `step`: a verdict (422 with Exact's text and what to do) when Exact refused on the merits,
/// otherwise the error it is (429, 502, 503…).
fn refused(
    app: &App,
    step: Step,
    e: &ExactError,
    email: &str,
    invoice: Option<TestInvoice>,
) -> TestInvoiceFailure {
    let api = from_exact(e, app);
    match e.kind {
        ErrorKind::Validation => TestInvoiceFailure::Refused {
            error: ApiError {
                code: step.code(),
                message: step.hint(email),
                ..api
            },
            invoice,
        },
        ErrorKind::Forbidden => TestInvoiceFailure::Refused {
            error: api,
            invoice,
        },
        _ => TestInvoiceFailure::Api(api),
    }
}

async fn test_invoice(
    app: &App,
    session: &Session,
    settings: &Settings,
    item: &Item,
) -> Result<Done, TestInvoiceFailure> {
    let c = &session.connection;
    let exact = &session.exact;
    let email = c.connected_user_email.as_str();
    let customer = test_customer(app, session).await?;
    let today = app.now().date_naive();
    let payload = invoice_payload(settings, item.id, &customer, app.now(), today);
    let created = match exact.create_sales_invoice(&payload).await {
        Ok(inv) => inv,
        Err(e) => {
            let mut failure = refused(app, Step::CreateInvoice, &e, email, None);
            if e.kind == ErrorKind::Validation && customer.from_cache {
                // The cached customer may have been deleted in Exact: look it up again next time.
                forget_customer(app, c, &customer).await;
                if let TestInvoiceFailure::Refused { error, .. } = &mut failure {
                    error.message.push_str(&format!(
                        " If the test customer \"{TEST_ACCOUNT_NAME}\" or its contact was deleted in Exact, test \
                         again: they are created anew."
                    ));
                }
            }
            return Err(failure);
        }
    };
    let invoice_id = created.invoice_id;
    let print = printed_invoice_payload(invoice_id, settings.send_invoice_to_customer, today);
    let printed = match exact.print_sales_invoice(&print).await {
        Ok(p) => p,
        Err(e) => {
            let status = discard_draft(session, invoice_id).await;
            let invoice = TestInvoice::NotProcessed {
                exact_invoice_id: invoice_id,
                status,
            };
            return Err(refused(app, Step::ProcessInvoice, &e, email, Some(invoice)));
        }
    };
    let number = match created.invoice_number {
        Some(n) => Some(n),
        None => read_number(session, invoice_id).await,
    };
    let errors = printed.errors();
    if !errors.is_empty() {
        let text = errors.join("\r\n");
        let email_failed = printed
            .email_creation_error
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty());
        let (code, hint) = if email_failed {
            (
                "test_invoice_email_failed",
                format!(
                    "Exact processed the test invoice but could not e-mail it to {email}. Check the e-mail layout \
                     and sender settings in Exact (or switch off sending to the customer), then test again."
                ),
            )
        } else {
            (
                "test_invoice_document_failed",
                "Exact processed the test invoice but could not create its document. Check the invoice layout \
                 in Exact, then test again."
                    .to_owned(),
            )
        };
        return Err(TestInvoiceFailure::Refused {
            error: ApiError::unprocessable(code, hint).with_exact_message(Some(text)),
            invoice: Some(TestInvoice::ProcessedWithErrors {
                exact_invoice_id: invoice_id,
                exact_invoice_number: number,
                status: "processed",
            }),
        });
    }
    Ok(Done {
        invoice_id,
        number,
        emailed: settings.send_invoice_to_customer,
    })
}

fn invoice_payload(
    settings: &Settings,
    item: ExactGuid,
    customer: &Customer,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> SalesInvoicePayload {
    SalesInvoicePayload {
        journal: settings.journal_code.clone(),
        invoice_type: SALES_INVOICE_TYPE,
        ordered_by: customer.account,
        invoice_to: customer.account,
        invoice_to_contact_person: customer.contact,
        order_date: today,
        description: TEST_INVOICE_DESCRIPTION.to_owned(),
        your_ref: format!("PSA-EXACT-TEST-{}", now.format("%Y%m%d%H%M%S")),
        payment_reference: TEST_INVOICE_DESCRIPTION.to_owned(),
        sales_invoice_lines: vec![SalesInvoiceLinePayload {
            item,
            description: TEST_LINE_DESCRIPTION.to_owned(),
            notes: Some(TEST_LINE_NOTES.to_owned()),
            quantity: 1.0,
            vat_code: settings.tax_code.clone(),
            // Nothing to pay: the invoice only proves the set-up.
            unit_price: Decimal::ZERO,
            net_price: Decimal::ZERO,
            start_time: None,
            end_time: None,
        }],
    }
}

/// The invoice number Exact assigned at processing, read only while the call budget allows.
async fn read_number(session: &Session, invoice_id: ExactGuid) -> Option<i64> {
    if session.stats.total() >= MAX_EXACT_CALLS {
        return None;
    }
    match session.exact.get_sales_invoice(invoice_id).await {
        Ok(inv) => inv.and_then(|i| i.invoice_number),
        Err(e) => {
            tracing::warn!(error = %e, "reading the test invoice's number failed (left out)");
            None
        }
    }
}

/// Deletes the unprocessed test invoice while the call budget allows; answers what became of it.
async fn discard_draft(session: &Session, invoice_id: ExactGuid) -> &'static str {
    if session.stats.total() >= MAX_EXACT_CALLS {
        return "open";
    }
    match session
        .exact
        .delete_by_key(
            "delete_test_invoice",
            "salesinvoice/SalesInvoices",
            invoice_id,
        )
        .await
    {
        Ok(()) => "deleted",
        Err(e) => {
            tracing::warn!(error = %e, "deleting the unprocessed test invoice failed (left open)");
            "open"
        }
    }
}

// ---- the test customer ----------------------------------------------------------------------------------------

struct Customer {
    account: ExactGuid,
    contact: ExactGuid,
    /// Either ID came from the cache (and may be stale).
    from_cache: bool,
}

fn account_key() -> MappingKey {
    MappingKey::Account {
        psa_company_id: TEST_ACCOUNT_KEY.to_owned(),
    }
}

fn contact_key(account: ExactGuid, email: &str) -> MappingKey {
    MappingKey::Contact {
        account_id: account,
        email: email.to_owned(),
    }
}

/// The test customer and its contact (the connected user's e-mail): cached IDs, else found by name / e-mail,
/// else created; remembered per connection and administration.
async fn test_customer(app: &App, session: &Session) -> Result<Customer, TestInvoiceFailure> {
    let c = &session.connection;
    let (conn, division) = (&c.connection_id, c.division);
    let exact = &session.exact;
    let email = c.connected_user_email.trim();
    let fail = |step: Step, e: &ExactError| refused(app, step, e, email, None);

    let cached = app
        .state
        .get_mapping(conn, division, &account_key())
        .await?;
    let (account, account_cached, account_new) = match cached {
        Some(id) => (id, true, false),
        None => {
            let found = exact
                .find_accounts_by_name(TEST_ACCOUNT_NAME)
                .await
                .map_err(|e| fail(Step::FindAccount, &e))?;
            // Names are not unique: the oldest key wins, deterministically.
            let (id, new) = match found.iter().map(|a| a.id).min() {
                Some(id) => (id, false),
                None => {
                    let body = AccountPayload {
                        name: TEST_ACCOUNT_NAME.to_owned(),
                        address_line1: None,
                        city: None,
                        status: mapping::ACCOUNT_STATUS_CUSTOMER.to_owned(),
                    };
                    let id = exact
                        .create_account(&body)
                        .await
                        .map_err(|e| fail(Step::CreateAccount, &e))?;
                    (id, true)
                }
            };
            app.state
                .put_mapping(conn, division, &account_key(), id)
                .await?;
            (id, false, new)
        }
    };

    let key = contact_key(account, email);
    let cached = app.state.get_mapping(conn, division, &key).await?;
    let (contact, contact_cached) = match cached {
        Some(id) => (id, true),
        None => {
            // A customer created just now has no contacts: no need to ask.
            let existing = if account_new {
                None
            } else {
                exact
                    .find_contacts_by_email(email)
                    .await
                    .map_err(|e| fail(Step::FindContact, &e))?
                    .into_iter()
                    .filter(|k| k.account == Some(account))
                    .map(|k| k.id)
                    .min()
            };
            let id = match existing {
                Some(id) => id,
                None => exact
                    .create_contact(&contact_payload(c, account))
                    .await
                    .map_err(|e| fail(Step::CreateContact, &e))?,
            };
            app.state.put_mapping(conn, division, &key, id).await?;
            (id, false)
        }
    };
    Ok(Customer {
        account,
        contact,
        from_cache: account_cached || contact_cached,
    })
}

/// The connected user as the test contact: first name and the rest of the full name, the user's e-mail.
fn contact_payload(c: &ConnectionRecord, account: ExactGuid) -> ContactPayload {
    let name = c.connected_user_name.trim();
    let (first, last) = match name.split_once(' ') {
        Some((f, l)) => (Some(f.trim().to_owned()), l.trim().to_owned()),
        None if !name.is_empty() => (None, name.to_owned()),
        None => (None, "psa-exact test contact".to_owned()),
    };
    ContactPayload {
        account,
        first_name: first.filter(|f| !f.is_empty()),
        last_name: Some(last),
        email: c.connected_user_email.trim().to_owned(),
    }
}

async fn forget_customer(app: &App, c: &ConnectionRecord, customer: &Customer) {
    let (conn, division) = (&c.connection_id, c.division);
    let email = c.connected_user_email.trim();
    for key in [account_key(), contact_key(customer.account, email)] {
        if let Err(e) = app.state.forget_mapping(conn, division, &key).await {
            tracing::warn!(error = %e, "forgetting a cached test customer ID failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn settings(v: Value) -> Settings {
        Settings::from_value(&v).unwrap()
    }

    #[test]
    fn vat_codes_are_asked_once_each() {
        let s = settings(json!({
            "item_code": "CONSULT", "journal_code": "70", "tax_code": "",
            "tax_categories": [
                {"category": "high", "exact_vat_code": "2"},
                {"category": "low", "exact_vat_code": "1"},
                {"category": "rc", "exact_vat_code": "rc"},
                {"category": "RC2", "exact_vat_code": "RC"}
            ]
        }));
        assert_eq!(distinct_vat_codes(&s), vec!["2", "1", "rc"]);
    }

    #[test]
    fn the_test_customer_key_cannot_be_a_psa_company_id() {
        // PSA company ids are trimmed on parsing; this key starts with a space.
        assert_ne!(TEST_ACCOUNT_KEY.trim(), TEST_ACCOUNT_KEY);
    }

    #[test]
    fn outcome_status_follows_the_verdict() {
        let o = TestResult {
            checks: Vec::new(),
            division: 1,
            division_name: String::new(),
            dry_run: false,
            error: None,
            exact_calls: 0,
            ok: false,
            settings_saved: false,
            test_invoice: None,
        };
        assert_eq!(o.status(), 422);
    }
}

//! Read-only probes (and the few writes the smoke test makes) that settle what `docs/exact-online.md` still calls a
//! belief. Each probe is one call through the same client, governor and OData helpers as the product calls, with
//! `$top=1` and the fewest `$select` fields, and answers what Exact said *and* the HTTP facts around it (the `Date`
//! header, the rate-limit headers), so the caller can judge a belief against what was observed.

use chrono::DateTime;
use mapping::ExactGuid;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use crate::calls::Created;
use crate::client::{Accept, Answer, ExactClient};
use crate::error::{ErrorKind, ExactError};
use crate::odata::{Filter, Lit, parse_page, parse_single, query_string};
use crate::ratelimit::{RateLimitState, parse_headers};

/// A code list whose codes Exact may store padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeList {
    /// `logistics/Items` (mandatory filtering applies).
    Items,
    /// `vat/VATCodes` (codes padded to 3 characters).
    VatCodes,
}

impl CodeList {
    fn path(self) -> &'static str {
        match self {
            CodeList::Items => "logistics/Items",
            CodeList::VatCodes => "vat/VATCodes",
        }
    }
    fn op(self) -> &'static str {
        match self {
            CodeList::Items => "probe_items_by_code",
            CodeList::VatCodes => "probe_vat_codes_by_code",
        }
    }
}

/// How a code is compared in the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeMatch {
    /// `trim(Code) eq '…'`.
    Trimmed,
    /// `Code eq '…'`.
    Exact,
}

/// A row of a code list with its code exactly as stored (padding kept).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CodeRow {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    #[serde(rename = "Code")]
    pub code_as_stored: String,
}

/// An answer and what came with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen<T> {
    pub value: T,
    /// The answer's HTTP `Date` header, epoch ms (UTC).
    pub http_date_ms: Option<i64>,
    /// The rate-limit headers of this very answer (not merged with earlier ones).
    pub rate: RateLimitState,
    /// The answer's `Content-Type`.
    pub content_type: Option<String>,
}

fn seen<T>(value: T, headers: &HeaderMap) -> Seen<T> {
    let date = headers
        .get("date")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| DateTime::parse_from_rfc2822(s).ok())
        .map(|t| t.timestamp_millis());
    Seen {
        value,
        http_date_ms: date,
        rate: parse_headers(headers),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// The first page of a collection: how many rows, and the `__next` URL if Exact announced one.
#[derive(Debug, Clone, PartialEq)]
pub struct PageShape {
    pub rows: usize,
    pub next: Option<Url>,
}

/// `/Date(ms)/` as the number Exact wrote (its wall-clock reading, not converted).
fn opt_wall_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.and_then(|s| {
        s.trim()
            .strip_prefix("/Date(")?
            .strip_suffix(")/")?
            .parse()
            .ok()
    }))
}

/// The answer of `POST salesinvoice/SalesInvoices`, as far as the beliefs go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedInvoice {
    #[serde(rename = "InvoiceID")]
    pub invoice_id: ExactGuid,
    /// `null` when the journal numbers at processing.
    #[serde(default)]
    pub invoice_number: Option<i64>,
    #[serde(default)]
    pub status: Option<i32>,
    /// `Created` exactly as written (`/Date(ms)/`): Amsterdam wall-clock time if the belief holds.
    #[serde(rename = "Created", default, deserialize_with = "opt_wall_ms")]
    pub created_wall_ms: Option<i64>,
}

/// The answer of `POST salesinvoice/PrintedSalesInvoices`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Processed {
    /// Whether the processing answer carries the number (the connector assumes it does not).
    #[serde(default)]
    pub invoice_number: Option<i64>,
    #[serde(default)]
    pub document_creation_error: Option<String>,
    #[serde(default)]
    pub email_creation_error: Option<String>,
}

impl Processed {
    /// Non-empty `*Error` texts, verbatim.
    pub fn errors(&self) -> Vec<&str> {
        [&self.document_creation_error, &self.email_creation_error]
            .into_iter()
            .filter_map(|e| e.as_deref())
            .filter(|e| !e.trim().is_empty())
            .collect()
    }
}

/// One line's prices as Exact stored them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LinePrices {
    #[serde(default)]
    pub quantity: Option<f64>,
    #[serde(default)]
    pub unit_price: Option<f64>,
    #[serde(default)]
    pub net_price: Option<f64>,
    #[serde(rename = "AmountFC", default)]
    pub amount_fc: Option<f64>,
    /// As stored (padding kept).
    #[serde(rename = "VATCode", default)]
    pub vat_code: Option<String>,
}

/// An invoice with its lines inline (`$expand=SalesInvoiceLines`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvoiceWithLines {
    #[serde(default)]
    pub invoice_number: Option<i64>,
    #[serde(default)]
    pub status: Option<i32>,
    #[serde(
        rename = "SalesInvoiceLines",
        default,
        deserialize_with = "inline_lines"
    )]
    pub lines: Vec<LinePrices>,
}

/// An expanded navigation collection: `{"results":[…]}` (OData v2) or a bare array; a deferred one (not expanded)
/// has no lines to read.
fn inline_lines<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LinePrices>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Nav {
        Wrapped {
            results: Vec<LinePrices>,
        },
        Bare(Vec<LinePrices>),
        Deferred {
            #[serde(rename = "__deferred")]
            _deferred: serde::de::IgnoredAny,
        },
    }
    Ok(match Option::<Nav>::deserialize(d)? {
        Some(Nav::Wrapped { results }) | Some(Nav::Bare(results)) => results,
        Some(Nav::Deferred { .. }) | None => Vec::new(),
    })
}

/// What subscribing a topic did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// A new subscription with this ID (the caller removes it again).
    Created(ExactGuid),
    /// Exact's 500 "Data already exists": the app has this topic in this division already (accepted, not ours).
    AlreadyExists,
}

/// The fields of a webhook delivery's `Content` (`docs/exact-online.md` §6.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    #[serde(rename = "Topic")]
    pub topic: String,
    #[serde(rename = "Division")]
    pub division: i64,
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Key", default)]
    pub key: String,
    #[serde(rename = "EventCreatedOn", default)]
    pub event_created_on: String,
}

impl WebhookEvent {
    /// Reads a `Content` object already verified (e.g. by the connector's check of the delivery).
    pub fn from_content(content: &[u8]) -> Option<Self> {
        serde_json::from_slice(content).ok()
    }

    /// Reads a whole delivery after checking its `HashCode` over the raw `Content` bytes with `secret`.
    pub fn verify(body: &[u8], secret: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Delivery<'a> {
            #[serde(rename = "Content", borrow)]
            content: &'a serde_json::value::RawValue,
            #[serde(rename = "HashCode")]
            hash_code: &'a str,
        }
        let d: Delivery<'_> = serde_json::from_slice(body).ok()?;
        let content = d.content.get().as_bytes();
        mapping::signature::verify_hash_code(secret, content, d.hash_code)
            .then(|| Self::from_content(content))
            .flatten()
    }
}

impl ExactClient {
    async fn get_seen(
        &self,
        op: &'static str,
        path: &str,
        query: &str,
        accept: Accept,
    ) -> Result<Answer, ExactError> {
        let url = self.division_url(op, path, Some(query))?;
        self.execute_as(op, Method::GET, &url, None, Some(self.division()), accept)
            .await
    }

    /// `GET {list}?$filter=[trim(]Code[)] eq '…'&$select=ID,Code&$top=1`: whether Exact accepts the filter and
    /// what it finds, with the code as stored.
    pub async fn probe_code(
        &self,
        list: CodeList,
        code: &str,
        how: CodeMatch,
    ) -> Result<Seen<Vec<CodeRow>>, ExactError> {
        let op = list.op();
        let f = match how {
            CodeMatch::Trimmed => Filter::eq_trim("Code", Lit::Str(code)),
            CodeMatch::Exact => Filter::eq("Code", Lit::Str(code)),
        };
        let q = query_string(Some(&f), &["ID", "Code"], Some(1), None)
            .map_err(|m| ExactError::protocol(op, m))?;
        let ans = self.get_seen(op, list.path(), &q, Accept::Json).await?;
        let (rows, _) = parse_page(&ans.body).map_err(|m| ExactError::protocol(op, m))?;
        Ok(seen(rows, &ans.headers))
    }

    /// `GET logistics/Items?$select=ID&$top=1` without `$filter`: Exact's mandatory filtering should refuse it
    /// (a 400, which counts toward the error limit of that endpoint: one call only).
    pub async fn probe_items_without_filter(&self) -> Result<Seen<usize>, ExactError> {
        const OP: &str = "probe_items_without_filter";
        let q =
            query_string(None, &["ID"], Some(1), None).map_err(|m| ExactError::protocol(OP, m))?;
        let ans = self
            .get_seen(OP, "logistics/Items", &q, Accept::Json)
            .await?;
        let rows = parse_page::<serde_json::Value>(&ans.body)
            .map(|(r, _)| r.len())
            .unwrap_or(0);
        Ok(seen(rows, &ans.headers))
    }

    /// `GET financial/Journals?…&$top=1` without `Accept: application/json`: which format Exact answers in.
    pub async fn probe_without_accept(&self) -> Result<Seen<()>, ExactError> {
        const OP: &str = "probe_without_accept";
        let f = Filter::eq("Type", Lit::Int(i64::from(crate::JOURNAL_TYPE_SALES)));
        let q = query_string(Some(&f), &["Code"], Some(1), None)
            .map_err(|m| ExactError::protocol(OP, m))?;
        let ans = self
            .get_seen(OP, "financial/Journals", &q, Accept::Unset)
            .await?;
        Ok(seen((), &ans.headers))
    }

    /// The first page of customer accounts, IDs and codes only: its size and whether a `__next` came with it
    /// (never followed).
    pub async fn probe_accounts_page(&self) -> Result<Seen<PageShape>, ExactError> {
        const OP: &str = "probe_accounts_page";
        let f = Filter::eq("Status", Lit::Str(mapping::ACCOUNT_STATUS_CUSTOMER));
        let q = query_string(Some(&f), &["ID", "Code"], None, None)
            .map_err(|m| ExactError::protocol(OP, m))?;
        let ans = self.get_seen(OP, "crm/Accounts", &q, Accept::Json).await?;
        let (rows, next) =
            parse_page::<serde_json::Value>(&ans.body).map_err(|m| ExactError::protocol(OP, m))?;
        let next = next
            .map(|s| Url::parse(&s).map_err(|_| ExactError::protocol(OP, "__next is not a URL")))
            .transpose()?;
        Ok(seen(
            PageShape {
                rows: rows.len(),
                next,
            },
            &ans.headers,
        ))
    }

    /// `POST salesinvoice/SalesInvoices`, answering the number as created and `Created` as written.
    pub async fn probe_create_invoice(
        &self,
        body: &impl Serialize,
    ) -> Result<Seen<CreatedInvoice>, ExactError> {
        const OP: &str = "probe_create_invoice";
        let ans = self
            .post_raw(OP, "salesinvoice/SalesInvoices", body)
            .await?;
        let created = parse_single(&ans.body).map_err(|m| ExactError::protocol(OP, m))?;
        Ok(seen(created, &ans.headers))
    }

    /// `POST salesinvoice/PrintedSalesInvoices`, answering whether the answer carries a number.
    pub async fn probe_process_invoice(
        &self,
        body: &impl Serialize,
    ) -> Result<Seen<Processed>, ExactError> {
        const OP: &str = "probe_process_invoice";
        let ans = self
            .post_raw(OP, "salesinvoice/PrintedSalesInvoices", body)
            .await?;
        let processed = parse_single(&ans.body).map_err(|m| ExactError::protocol(OP, m))?;
        Ok(seen(processed, &ans.headers))
    }

    /// The invoice's number, status and lines as stored (one call, lines expanded).
    pub async fn probe_invoice_lines(
        &self,
        id: ExactGuid,
    ) -> Result<Option<InvoiceWithLines>, ExactError> {
        self.get_by_key(
            "probe_invoice_lines",
            "salesinvoice/SalesInvoices",
            id,
            &["InvoiceNumber", "Status", "SalesInvoiceLines"],
            Some("SalesInvoiceLines"),
        )
        .await
    }

    /// Removes an open (unprocessed) invoice; one that is already gone counts as removed.
    pub async fn delete_sales_invoice(&self, id: ExactGuid) -> Result<(), ExactError> {
        match self
            .delete_by_key("delete_sales_invoice", "salesinvoice/SalesInvoices", id)
            .await
        {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Subscribes `callback_url` to `topic`, telling a new subscription (with its ID, to remove it again) from one
    /// the app had already (Exact's 500 "Data already exists").
    pub async fn probe_subscribe(
        &self,
        topic: &str,
        callback_url: &str,
    ) -> Result<Subscribed, ExactError> {
        const OP: &str = "probe_subscribe";
        let body = serde_json::json!({ "Topic": topic, "CallbackURL": callback_url });
        match self
            .post_raw(OP, "webhooks/WebhookSubscriptions", &body)
            .await
        {
            Ok(ans) => parse_single::<Created>(&ans.body)
                .map(|c| Subscribed::Created(c.id))
                .map_err(|m| ExactError::protocol(OP, m)),
            Err(e)
                if e.kind == ErrorKind::Validation
                    && e.message
                        .as_deref()
                        .is_some_and(crate::calls::already_exists) =>
            {
                Ok(Subscribed::AlreadyExists)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_keeps_the_written_number_and_processed_reads_errors() {
        let c: CreatedInvoice = parse_single(
            br#"{"d":{"InvoiceID":"5b7f4515-b7a0-4839-ac69-574968677d96","InvoiceNumber":null,"Status":20,"Created":"/Date(1751380260000)/"}}"#,
        )
        .unwrap();
        assert_eq!(c.invoice_number, None);
        assert_eq!(c.created_wall_ms, Some(1_751_380_260_000));
        let p: Processed = parse_single(
            br#"{"d":{"InvoiceID":"5b7f4515-b7a0-4839-ac69-574968677d96","EmailCreationError":"Geen e-mailadres","DocumentCreationError":" "}}"#,
        )
        .unwrap();
        assert_eq!(p.invoice_number, None);
        assert_eq!(p.errors(), ["Geen e-mailadres"]);
    }

    #[test]
    fn expanded_lines_come_wrapped_or_bare() {
        let w: InvoiceWithLines = parse_single(
            br#"{"d":{"InvoiceNumber":25700001,"Status":50,"SalesInvoiceLines":{"results":[{"Quantity":1.0,"UnitPrice":10.0,"NetPrice":10.0,"AmountFC":10.0,"VATCode":"2  "}]}}}"#,
        )
        .unwrap();
        assert_eq!(w.lines.len(), 1);
        assert_eq!(w.lines[0].vat_code.as_deref(), Some("2  "));
        let b: InvoiceWithLines =
            parse_single(br#"{"d":{"SalesInvoiceLines":[{"UnitPrice":0}]}}"#).unwrap();
        assert_eq!(b.lines[0].unit_price, Some(0.0));
        let d: InvoiceWithLines =
            parse_single(br#"{"d":{"SalesInvoiceLines":{"__deferred":{"uri":"x"}}}}"#).unwrap();
        assert!(d.lines.is_empty());
        assert!(parse_single::<InvoiceWithLines>(br#"{"d":{"SalesInvoiceLines":7}}"#).is_err());
    }

    #[test]
    fn a_delivery_verifies_only_with_its_secret() {
        let body = r#"{"Content":{"Topic":"SalesInvoices","ClientId":"3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42","Division":1234567,"Action":"Update","Key":"7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a","ExactOnlineEndpoint":"https://start.exactonline.nl/api/v1/1234567/salesinvoice/SalesInvoices(guid'7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a')","EventCreatedOn":"2025-03-14T10:15:42.137"},"HashCode":"0DFF441BE9735A9E20039517DFCECFCE0BBEB8785636886B2B5ED7567C4F8519"}"#;
        let e = WebhookEvent::verify(body.as_bytes(), "demo-webhook-secret-2025").unwrap();
        assert_eq!(e.topic, "SalesInvoices");
        assert_eq!(e.event_created_on, "2025-03-14T10:15:42.137");
        assert!(WebhookEvent::verify(body.as_bytes(), "another-secret").is_none());
    }
}

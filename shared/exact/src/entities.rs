//! What the product reads from Exact, deserialised from Exact's PascalCase fields. Codes are
//! trimmed; `/Date(ms)/` values (Amsterdam wall-clock time, see [`crate::parse_exact_date`]) become
//! `DateTime<Utc>`; everything Exact may leave empty is optional.

use chrono::{DateTime, Utc};
use mapping::{Division, ExactGuid};
use serde::Deserialize;

use crate::odata::de;

/// `current/Me`: who signed in and which administration they had open.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Me {
    pub current_division: Division,
    #[serde(rename = "UserID")]
    pub user_id: ExactGuid,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub language_code: Option<String>,
}

/// `system/Divisions`: an administration the user may use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DivisionInfo {
    pub code: Division,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de::opt_trimmed")]
    pub country: Option<String>,
}

/// `crm/Accounts`, as far as finding one goes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountRef {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    #[serde(default)]
    pub name: Option<String>,
    /// Exact pads it to 18 characters; trimmed here.
    #[serde(default, deserialize_with = "de::opt_trimmed")]
    pub code: Option<String>,
    /// The relation type: `C` customer, `P` prospect, `S` suspect, `A` none (e.g. a supplier only).
    #[serde(default, deserialize_with = "de::opt_trimmed")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de::null_false")]
    pub is_supplier: bool,
    #[serde(default, deserialize_with = "de::null_false")]
    pub blocked: bool,
}

impl AccountRef {
    /// Whether a sales invoice may be made out to this account: a customer (`Status` `C`) that is not blocked.
    ///
    /// Exact refuses an invoice ordered by a relation that is not a customer (`Ongeldig: Besteld door (Type)`) or
    /// is blocked. Prospects (`P`) and suspects (`S`) are not reused either: invoicing them would depend on
    /// Exact converting the relation, which is not documented here; a new customer account is created instead.
    pub fn can_be_invoiced(&self) -> bool {
        !self.blocked && self.status.as_deref() == Some(mapping::ACCOUNT_STATUS_CUSTOMER)
    }
}

/// `crm/Contacts`, as far as finding one goes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContactRef {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    #[serde(default, deserialize_with = "de::opt_guid")]
    pub account: Option<ExactGuid>,
    #[serde(default)]
    pub email: Option<String>,
}

/// `logistics/Items`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    #[serde(deserialize_with = "de::trimmed")]
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de::null_false")]
    pub is_sales_item: bool,
    #[serde(default, deserialize_with = "de::opt_trimmed")]
    pub sales_vat_code: Option<String>,
    /// The item may not be used after this date.
    #[serde(default, deserialize_with = "de::opt_date")]
    pub end_date: Option<DateTime<Utc>>,
}

/// Journal type of a sales journal.
pub const JOURNAL_TYPE_SALES: i32 = 20;

/// `financial/Journals`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Journal {
    #[serde(deserialize_with = "de::trimmed")]
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
    /// 20 = sales, 22 = purchase, 12 = bank, …
    #[serde(rename = "Type")]
    pub journal_type: i32,
    #[serde(default, deserialize_with = "de::null_false")]
    pub is_blocked: bool,
}

/// `vat/VATCodes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VatCode {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    /// Exact pads it to 3 characters; trimmed here.
    #[serde(deserialize_with = "de::trimmed")]
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A fraction: 0.21 for 21 %.
    #[serde(default)]
    pub percentage: Option<f64>,
    /// `S` sales, `P` purchase, `B` both.
    #[serde(
        rename = "VATTransactionType",
        default,
        deserialize_with = "de::opt_trimmed"
    )]
    pub vat_transaction_type: Option<String>,
    #[serde(default, deserialize_with = "de::null_false")]
    pub is_blocked: bool,
}

impl VatCode {
    /// Usable on a sales invoice line: for sales (S) or both (B), and not blocked.
    pub fn usable_for_sales(&self) -> bool {
        !self.is_blocked && matches!(self.vat_transaction_type.as_deref(), Some("S" | "B"))
    }
}

/// Invoice status: open (entered, not processed).
pub const INVOICE_STATUS_OPEN: i32 = 20;
/// Invoice status: processed (booked; numbered).
pub const INVOICE_STATUS_PROCESSED: i32 = 50;

/// `salesinvoice/SalesInvoices` (header).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SalesInvoice {
    #[serde(rename = "InvoiceID")]
    pub invoice_id: ExactGuid,
    /// Assigned at entry or at processing, depending on the journal.
    #[serde(default)]
    pub invoice_number: Option<i64>,
    /// 20 open, 50 processed.
    #[serde(default)]
    pub status: Option<i32>,
    #[serde(default)]
    pub your_ref: Option<String>,
    #[serde(default, deserialize_with = "de::opt_guid")]
    pub ordered_by: Option<ExactGuid>,
    #[serde(default, deserialize_with = "de::opt_trimmed")]
    pub journal: Option<String>,
    /// Total including VAT, in the division's currency.
    #[serde(rename = "AmountDC", default)]
    pub amount_dc: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_date")]
    pub invoice_date: Option<DateTime<Utc>>,
}

/// `salesinvoice/PrintedSalesInvoices` answer. Check the `*_error` fields even on success.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrintResult {
    #[serde(rename = "InvoiceID", default, deserialize_with = "de::opt_guid")]
    pub invoice_id: Option<ExactGuid>,
    #[serde(default)]
    pub document_creation_success: Option<String>,
    #[serde(default)]
    pub document_creation_error: Option<String>,
    #[serde(default)]
    pub email_creation_success: Option<String>,
    #[serde(default)]
    pub email_creation_error: Option<String>,
}

impl PrintResult {
    /// Non-empty `*Error` texts, verbatim.
    pub fn errors(&self) -> Vec<&str> {
        [&self.document_creation_error, &self.email_creation_error]
            .into_iter()
            .filter_map(|e| e.as_deref())
            .filter(|e| !e.trim().is_empty())
            .collect()
    }
}

/// Receivable status: matched (paid or otherwise settled).
pub const RECEIVABLE_STATUS_MATCHED: i32 = 50;

/// `cashflow/Receivables`: one outstanding amount (an invoice may have several rows).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Receivable {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    #[serde(rename = "EntryID", default, deserialize_with = "de::opt_guid")]
    pub entry_id: Option<ExactGuid>,
    #[serde(default)]
    pub invoice_number: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_trimmed")]
    pub journal: Option<String>,
    #[serde(default)]
    pub your_ref: Option<String>,
    #[serde(rename = "AmountDC", default)]
    pub amount_dc: Option<f64>,
    #[serde(default, deserialize_with = "de::null_false")]
    pub is_fully_paid: bool,
    /// 20 open, 30 selected, 40 processed, 50 matched.
    #[serde(default)]
    pub status: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_date")]
    pub last_payment_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::opt_date")]
    pub end_date: Option<DateTime<Utc>>,
    #[serde(
        rename = "TransactionEntryID",
        default,
        deserialize_with = "de::opt_guid"
    )]
    pub transaction_entry_id: Option<ExactGuid>,
    #[serde(default, deserialize_with = "de::opt_guid")]
    pub account: Option<ExactGuid>,
}

/// `webhooks/WebhookSubscriptions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookSubscription {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    pub topic: String,
    #[serde(rename = "CallbackURL")]
    pub callback_url: String,
}

/// `crm/Accounts` with the sales payment condition: what the connection test's dry run reads of the test customer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountTerms {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    #[serde(default)]
    pub name: Option<String>,
    /// The relation type (`C` customer); see [`AccountRef::can_be_invoiced`].
    #[serde(default, deserialize_with = "de::opt_trimmed")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de::null_false")]
    pub blocked: bool,
    /// The account's own sales payment condition (a code); `None` when it has none, so the administration's
    /// default applies.
    #[serde(default, deserialize_with = "de::opt_trimmed")]
    pub payment_condition_sales: Option<String>,
}

impl AccountTerms {
    /// Same rule as [`AccountRef::can_be_invoiced`].
    pub fn can_be_invoiced(&self) -> bool {
        !self.blocked && self.status.as_deref() == Some(mapping::ACCOUNT_STATUS_CUSTOMER)
    }

    /// The payment condition, when it is not empty.
    pub fn payment_condition(&self) -> Option<&str> {
        self.payment_condition_sales
            .as_deref()
            .filter(|c| !c.is_empty())
    }
}

/// `cashflow/PaymentConditions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentCondition {
    /// Trimmed.
    #[serde(deserialize_with = "de::trimmed")]
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// `documents/Documents`, as far as finding our specification document again goes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocumentRef {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
}

/// `documents/DocumentAttachments`: one file of a document (its content is not read back).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocumentAttachmentRef {
    #[serde(rename = "ID")]
    pub id: ExactGuid,
    #[serde(rename = "FileName", default)]
    pub file_name: Option<String>,
}

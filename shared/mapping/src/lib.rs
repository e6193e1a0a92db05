//! The PSA side of the connector and its mapping onto Exact Online: the PSA invoice model,
//! parse-don't-validate newtypes, validation rules and the Exact payloads (pure, no I/O — not
//! even a clock: dates are passed in).
//!
//! * [`Invoice::parse_json`] / [`Settings::parse_json`]: request bodies → validated model, or an
//!   error naming the field (`lines[0].amount`). [`InvalidInvoice::Malformed`] is a 400,
//!   [`InvalidInvoice::Rule`] a 422, [`InvalidInvoice::TooLarge`] (attachments) a 413.
//! * [`account_payload`], [`contact_payload`], [`sales_invoice_payload`],
//!   [`printed_invoice_payload`]: the Exact bodies; `payloads.rs` is the field mapping.
//! * [`signature`]: Exact's webhook `HashCode` and the connector's `X-Signature-256` on PSA callbacks, signed
//!   and checked in this one place.

mod amount;
pub mod attachment;
mod email;
mod error;
pub mod ids;
mod invoice;
mod json;
mod payloads;
mod settings;
pub mod signature;

pub use amount::{AMOUNT_DECIMALS, Amount, decimal_number};
pub use attachment::{Attachment, MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS};
pub use email::{Email, MAX_EMAIL_LEN};
pub use error::{FieldError, InvalidInvoice};
pub use ids::{ConnectionId, Country, Division, ExactGuid, IdError};
pub use invoice::{
    Company, Contact, Invoice, InvoiceLine, MAX_CODE_LEN, MAX_COMPANY_FIELD_LEN,
    MAX_COMPANY_ID_LEN, MAX_INVOICE_ID_LEN, MAX_LINE_DESCRIPTION_LEN, MAX_LINE_NOTES_LEN,
    MAX_LINES, MAX_NAME_LEN, MAX_PERSON_NAME_LEN, MAX_PROJECT_FIELD_LEN, MAX_REFERENCE_LEN, Period,
    Project,
};
pub use payloads::{
    ACCOUNT_STATUS_CUSTOMER, AccountPayload, ContactPayload, DOCUMENT_TYPE_GENERAL_ATTACHMENT,
    DocumentAttachmentPayload, DocumentPayload, InvoiceRefs, PrintedInvoicePayload,
    SALES_CREDIT_NOTE_TYPE, SALES_INVOICE_TYPE, SalesInvoiceLinePayload, SalesInvoicePayload,
    SalesInvoiceWithDocument, account_payload, contact_payload, document_attachment_payload,
    document_payload, document_subject, line_description, line_item_codes, payment_reference,
    printed_invoice_payload, sales_invoice_payload,
};
pub use rust_decimal::Decimal;
pub use settings::{
    DEFAULT_TAX_CODE, Delivery, MAX_ITEM_CODE_LEN, MAX_JOURNAL_CODE_LEN, MAX_TAX_CATEGORIES,
    MAX_TAX_CATEGORY_LEN, MAX_VAT_CODE_LEN, Settings, TaxCategoryMapping,
};

//! The Exact Online request bodies, built from the PSA model. This is the one place where the field mapping
//! lives (Exact's side of it: `docs/exact-online.md` §5).
//!
//! Wire rules Exact is strict about: PascalCase names as below, amounts and quantities as JSON
//! numbers (`8000.0`, never strings), dates as `yyyy-mm-dd`, GUIDs as bare strings, absent
//! optional fields left out (not `null`).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::amount::decimal_number;
use crate::ids::ExactGuid;
use crate::invoice::{Company, Contact, Invoice, InvoiceLine, MAX_PERSON_NAME_LEN, Project};
use crate::settings::Settings;

/// `crm/Accounts.Status` for a customer (invoiceable relation).
pub const ACCOUNT_STATUS_CUSTOMER: &str = "C";
/// `salesinvoice/SalesInvoices.Type` of a sales invoice.
pub const SALES_INVOICE_TYPE: i32 = 8020;
/// `salesinvoice/SalesInvoices.Type` of a sales credit note.
pub const SALES_CREDIT_NOTE_TYPE: i32 = 8021;

/// `POST crm/Accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPayload {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(
        rename = "AddressLine1",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub address_line1: Option<String>,
    #[serde(rename = "City", default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(rename = "Status")]
    pub status: String,
}

/// Account: Name ← company.name, AddressLine1 ← company.address, City ← company.city, Status ← `C`.
pub fn account_payload(company: &Company) -> AccountPayload {
    AccountPayload {
        name: company.name.clone(),
        address_line1: company.address.clone(),
        city: company.city.clone(),
        status: ACCOUNT_STATUS_CUSTOMER.to_owned(),
    }
}

/// `POST crm/Contacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPayload {
    #[serde(rename = "Account")]
    pub account: ExactGuid,
    #[serde(rename = "FirstName", default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(rename = "LastName", default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(rename = "Email")]
    pub email: String,
}

/// Contact: FirstName, LastName, Email ← contact; Account ← the account.
///
/// Exact refuses a contact without a first *and* without a last name ("Provide at least first
/// name or last name"). When the PSA sends neither, the e-mail's local part (`jane.doe` of
/// `jane.doe@acme.example`, cut to 50 characters) becomes the LastName, so the push still works
/// and the contact is recognisable in Exact.
pub fn contact_payload(contact: &Contact, account: ExactGuid) -> ContactPayload {
    let last_name = match (&contact.first_name, &contact.last_name) {
        (None, None) => Some(
            contact
                .email
                .local_part()
                .chars()
                .take(MAX_PERSON_NAME_LEN)
                .collect(),
        ),
        (_, last) => last.clone(),
    };
    ContactPayload {
        account,
        first_name: contact.first_name.clone(),
        last_name,
        email: contact.email.as_str().to_owned(),
    }
}

/// `POST salesinvoice/SalesInvoices`, lines inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SalesInvoicePayload {
    #[serde(rename = "Journal")]
    pub journal: String,
    /// 8020 invoice, 8021 credit note.
    #[serde(rename = "Type")]
    pub invoice_type: i32,
    #[serde(rename = "OrderedBy")]
    pub ordered_by: ExactGuid,
    #[serde(rename = "InvoiceTo")]
    pub invoice_to: ExactGuid,
    #[serde(rename = "InvoiceToContactPerson")]
    pub invoice_to_contact_person: ExactGuid,
    #[serde(rename = "OrderDate")]
    pub order_date: NaiveDate,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "YourRef")]
    pub your_ref: String,
    #[serde(rename = "PaymentReference")]
    pub payment_reference: String,
    #[serde(rename = "SalesInvoiceLines")]
    pub sales_invoice_lines: Vec<SalesInvoiceLinePayload>,
}

/// One element of `SalesInvoiceLines`. The amount goes to `NetPrice` *and* `UnitPrice` (equal, with `Quantity`
/// 1): without `UnitPrice` Exact prints a unit price of 0 on the invoice. The two never differ, so Exact has no
/// discount to compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SalesInvoiceLinePayload {
    #[serde(rename = "Item")]
    pub item: ExactGuid,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "Notes", default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Always 1: the PSA sends the line amount, not a unit price.
    #[serde(rename = "Quantity")]
    pub quantity: f64,
    #[serde(rename = "VATCode")]
    pub vat_code: String,
    /// Equal to `net_price`.
    #[serde(rename = "UnitPrice", with = "decimal_number")]
    pub unit_price: Decimal,
    #[serde(rename = "NetPrice", with = "decimal_number")]
    pub net_price: Decimal,
    #[serde(rename = "StartTime", default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<NaiveDate>,
    #[serde(rename = "EndTime", default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<NaiveDate>,
}

/// What the core resolved in Exact for one invoice.
#[derive(Debug, Clone, Copy)]
pub struct InvoiceRefs<'a> {
    /// `OrderedBy` and `InvoiceTo`.
    pub account: ExactGuid,
    /// `InvoiceToContactPerson` (a contact of `account`).
    pub contact: ExactGuid,
    /// `Journal`: the sales journal code from the settings, as the core checked it in Exact.
    pub journal_code: &'a str,
    /// item GUID for each line, same order as invoice.lines (the core resolves codes to GUIDs)
    pub line_items: &'a [ExactGuid],
}

/// The Exact item code of each line, in line order: what the core resolves to
/// [`InvoiceRefs::line_items`] (a line's own code, else the default item).
pub fn line_item_codes<'a>(inv: &'a Invoice, settings: &'a Settings) -> Vec<&'a str> {
    inv.lines
        .iter()
        .map(|l| settings.item_code_for(l))
        .collect()
}

/// The sales invoice with its lines (design "Field mapping", every row).
///
/// `Journal` comes from `refs.journal_code` (the caller passes the settings' journal code; it is
/// in the refs so a code the core checked against Exact is the one sent). `OrderDate` carries the
/// invoice date: harmless, and it helps Exact default its dates (`InvoiceDate` itself goes on
/// the printed-invoice request).
///
/// # Panics
/// When `refs.line_items` does not hold exactly one GUID per invoice line: that is a bug in the
/// caller, not bad input, and sending lines with the wrong items must never happen.
pub fn sales_invoice_payload(
    inv: &Invoice,
    settings: &Settings,
    refs: &InvoiceRefs,
) -> SalesInvoicePayload {
    assert_eq!(
        refs.line_items.len(),
        inv.lines.len(),
        "InvoiceRefs::line_items must hold one item GUID per invoice line"
    );
    let period = inv.period;
    let sales_invoice_lines = inv
        .lines
        .iter()
        .zip(refs.line_items)
        .map(|(line, item)| SalesInvoiceLinePayload {
            item: *item,
            description: line_description(line),
            notes: line.description.clone(),
            quantity: 1.0,
            vat_code: settings
                .vat_code_for(line.tax_category.as_deref())
                .to_owned(),
            unit_price: line.amount.as_decimal(),
            net_price: line.amount.as_decimal(),
            start_time: period.map(|p| p.from),
            end_time: period.map(|p| p.until),
        })
        .collect();
    SalesInvoicePayload {
        journal: refs.journal_code.to_owned(),
        invoice_type: if inv.credit {
            SALES_CREDIT_NOTE_TYPE
        } else {
            SALES_INVOICE_TYPE
        },
        ordered_by: refs.account,
        invoice_to: refs.account,
        invoice_to_contact_person: refs.contact,
        order_date: inv.invoice_date,
        description: inv.name.clone(),
        your_ref: inv.reference.clone(),
        payment_reference: payment_reference(&inv.project),
        sales_invoice_lines,
    }
}

/// `POST salesinvoice/PrintedSalesInvoices`: processes (books and numbers) the invoice, and
/// e-mails it when `SendEmailToCustomer` is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintedInvoicePayload {
    #[serde(rename = "InvoiceID")]
    pub invoice_id: ExactGuid,
    #[serde(rename = "SendEmailToCustomer")]
    pub send_email_to_customer: bool,
    /// Set here, at processing: `SalesInvoices.InvoiceDate` is read-only per Exact's reference.
    #[serde(rename = "InvoiceDate")]
    pub invoice_date: NaiveDate,
}

pub fn printed_invoice_payload(
    invoice_id: ExactGuid,
    send_email: bool,
    invoice_date: NaiveDate,
) -> PrintedInvoicePayload {
    PrintedInvoicePayload {
        invoice_id,
        send_email_to_customer: send_email,
        invoice_date,
    }
}

/// `PaymentReference`: `"{project.number} - {project.name}"`.
pub fn payment_reference(project: &Project) -> String {
    format!("{} - {}", project.number, project.name)
}

/// A line's `Description`: `"{line number} - {line name}"`.
pub fn line_description(line: &InvoiceLine) -> String {
    format!("{} - {}", line.number, line.name)
}

/// Exact's document type for the specification pages' document: 183, "general attachment" — the type a public
/// Exact integration uses to attach files to a sales invoice (`docs/exact-online.md` §5.9). Exact's own
/// type for a sales invoice (10) is the one Exact gives the document it makes when it processes the invoice, so it
/// is not used for ours.
pub const DOCUMENT_TYPE_GENERAL_ATTACHMENT: i32 = 183;

/// `POST documents/Documents`: the document the specification pages hang on. `Subject` and `Type` are mandatory
/// in Exact's reference; `Account` links it to the invoice's customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentPayload {
    #[serde(rename = "Subject")]
    pub subject: String,
    #[serde(rename = "Type")]
    pub document_type: i32,
    #[serde(rename = "Account")]
    pub account: ExactGuid,
}

/// The subject of an invoice's specification document: found again by it (with the account) when the answer of
/// its creation was lost. Exact's length for `Subject` is not documented; the reference is at most 60 characters.
pub fn document_subject(inv: &Invoice) -> String {
    format!("Specification {}", inv.reference)
}

pub fn document_payload(inv: &Invoice, account: ExactGuid) -> DocumentPayload {
    DocumentPayload {
        subject: document_subject(inv),
        document_type: DOCUMENT_TYPE_GENERAL_ATTACHMENT,
        account,
    }
}

/// `POST documents/DocumentAttachments`: one file of a document, its content as base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentAttachmentPayload<'a> {
    #[serde(rename = "Document")]
    pub document: ExactGuid,
    #[serde(rename = "FileName")]
    pub file_name: &'a str,
    /// Standard base64 of the file.
    #[serde(rename = "Attachment")]
    pub attachment: String,
}

pub fn document_attachment_payload(
    document: ExactGuid,
    file: &crate::Attachment,
) -> DocumentAttachmentPayload<'_> {
    DocumentAttachmentPayload {
        document,
        file_name: &file.file_name,
        attachment: file.content_base64(),
    }
}

/// A sales invoice linked to a document at its creation (`SalesInvoices.Document`), so no update call follows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SalesInvoiceWithDocument<'a> {
    #[serde(flatten)]
    pub invoice: &'a SalesInvoicePayload,
    #[serde(rename = "Document")]
    pub document: ExactGuid,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::tests::design_body;
    use crate::settings::tests::settings_body;
    use serde_json::{Value, json};

    const ACCOUNT: &str = "5b7f4515-b7a0-4839-ac69-574968677d96";
    const CONTACT: &str = "9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4";
    const ITEM_1: &str = "097a82a9-6ef7-4edc-8036-3f7559d9ef82";
    const ITEM_2: &str = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9";
    const INVOICE: &str = "7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a";

    fn guid(s: &str) -> ExactGuid {
        ExactGuid::parse(s).unwrap()
    }

    fn invoice(edit: impl FnOnce(&mut Value)) -> Invoice {
        let mut v = design_body();
        edit(&mut v);
        Invoice::from_value(&v).unwrap()
    }

    fn settings() -> Settings {
        Settings::from_value(&settings_body()).unwrap()
    }

    /// The design invoice with a second line (own item code, tax category, no description).
    fn two_line_invoice() -> Invoice {
        invoice(|v| {
            v["lines"] = json!([
                {"number": 1, "name": "Consultancy", "description": "80 hours senior consultant",
                 "amount": "8000.00", "item_code": null, "tax_category": null},
                {"number": 2, "name": "Travel", "amount": "45.5",
                 "item_code": "TRAVEL", "tax_category": "low"}
            ]);
        })
    }

    fn invoice_json(inv: &Invoice) -> Value {
        let items = [guid(ITEM_1), guid(ITEM_2)];
        let refs = InvoiceRefs {
            account: guid(ACCOUNT),
            contact: guid(CONTACT),
            journal_code: "70",
            line_items: &items[..inv.lines.len()],
        };
        serde_json::to_value(sales_invoice_payload(inv, &settings(), &refs)).unwrap()
    }

    // ---- Account -------------------------------------------------------------------------

    fn account_json(edit: impl FnOnce(&mut Value)) -> Value {
        serde_json::to_value(account_payload(&invoice(edit).company)).unwrap()
    }

    #[test]
    fn account_name_is_company_name() {
        assert_eq!(account_json(|_| {})["Name"], json!("Acme B.V."));
    }

    #[test]
    fn account_address_line1_is_company_address_and_omitted_when_absent() {
        assert_eq!(
            account_json(|_| {})["AddressLine1"],
            json!("Stationsplein 1")
        );
        let v = account_json(|v| v["company"]["address"] = Value::Null);
        assert!(v.get("AddressLine1").is_none(), "{v}");
    }

    #[test]
    fn account_city_is_company_city_and_omitted_when_absent() {
        assert_eq!(account_json(|_| {})["City"], json!("Utrecht"));
        let v = account_json(|v| v["company"]["city"] = json!(""));
        assert!(v.get("City").is_none(), "{v}");
    }

    #[test]
    fn account_status_is_customer() {
        assert_eq!(account_json(|_| {})["Status"], json!("C"));
    }

    #[test]
    fn account_payload_has_exactly_the_mapped_fields() {
        assert_eq!(
            account_json(|_| {}),
            json!({"Name": "Acme B.V.", "AddressLine1": "Stationsplein 1", "City": "Utrecht", "Status": "C"})
        );
    }

    // ---- Contact -------------------------------------------------------------------------

    fn contact_json(edit: impl FnOnce(&mut Value)) -> Value {
        serde_json::to_value(contact_payload(&invoice(edit).contact, guid(ACCOUNT))).unwrap()
    }

    #[test]
    fn contact_account_is_the_account_guid_as_a_bare_string() {
        assert_eq!(contact_json(|_| {})["Account"], json!(ACCOUNT));
    }

    #[test]
    fn contact_first_name_last_name_and_email_come_from_the_contact() {
        assert_eq!(
            contact_json(|_| {}),
            json!({"Account": ACCOUNT, "FirstName": "Jane", "LastName": "Doe",
                   "Email": "jane@acme.example"})
        );
    }

    #[test]
    fn contact_with_one_name_sends_only_that_name() {
        let v = contact_json(|v| v["contact"]["last_name"] = Value::Null);
        assert_eq!(v["FirstName"], json!("Jane"));
        assert!(v.get("LastName").is_none(), "{v}");
        let v = contact_json(|v| v["contact"]["first_name"] = Value::Null);
        assert!(v.get("FirstName").is_none(), "{v}");
        assert_eq!(v["LastName"], json!("Doe"));
    }

    #[test]
    fn contact_without_names_uses_the_email_local_part_as_last_name() {
        let v = contact_json(|v| {
            v["contact"] = json!({"email": "jane.doe@acme.example"});
        });
        assert!(v.get("FirstName").is_none(), "{v}");
        assert_eq!(v["LastName"], json!("jane.doe"));
        let long = format!("{}@acme.example", "x".repeat(64));
        let v = contact_json(|v| v["contact"] = json!({"email": long}));
        assert_eq!(v["LastName"], json!("x".repeat(50)));
    }

    // ---- Sales invoice header -------------------------------------------------------------

    #[test]
    fn invoice_description_is_the_invoice_name() {
        assert_eq!(
            invoice_json(&invoice(|_| {}))["Description"],
            json!("September 2025 - Website relaunch")
        );
    }

    #[test]
    fn invoice_payment_reference_is_project_number_dash_name() {
        assert_eq!(
            invoice_json(&invoice(|_| {}))["PaymentReference"],
            json!("P-1001 - Website relaunch")
        );
    }

    #[test]
    fn invoice_your_ref_is_the_psa_reference() {
        assert_eq!(
            invoice_json(&invoice(|_| {}))["YourRef"],
            json!("INV-2025-0042")
        );
    }

    #[test]
    fn invoice_to_and_ordered_by_are_the_account() {
        let v = invoice_json(&invoice(|_| {}));
        assert_eq!(v["InvoiceTo"], json!(ACCOUNT));
        assert_eq!(v["OrderedBy"], json!(ACCOUNT));
    }

    #[test]
    fn invoice_to_contact_person_is_the_contact() {
        assert_eq!(
            invoice_json(&invoice(|_| {}))["InvoiceToContactPerson"],
            json!(CONTACT)
        );
    }

    #[test]
    fn invoice_type_is_8020_or_8021_for_a_credit_note() {
        assert_eq!(invoice_json(&invoice(|_| {}))["Type"], json!(8020));
        let credit = invoice(|v| {
            v["credit"] = json!(true);
            v["lines"][0]["amount"] = json!("-8000.00");
        });
        let v = invoice_json(&credit);
        assert_eq!(v["Type"], json!(8021));
        assert!(v["Type"].is_i64());
        // A credit note's amounts go as given (negative).
        assert_eq!(v["SalesInvoiceLines"][0]["NetPrice"], json!(-8000.0));
    }

    #[test]
    fn invoice_journal_is_the_journal_code() {
        assert_eq!(invoice_json(&invoice(|_| {}))["Journal"], json!("70"));
        // The code travels in the refs (the caller passes the settings' journal code).
        let inv = invoice(|_| {});
        let items = [guid(ITEM_1)];
        let s = settings();
        let refs = InvoiceRefs {
            account: guid(ACCOUNT),
            contact: guid(CONTACT),
            journal_code: &s.journal_code,
            line_items: &items,
        };
        assert_eq!(
            sales_invoice_payload(&inv, &s, &refs).journal,
            s.journal_code
        );
    }

    #[test]
    fn invoice_order_date_is_the_invoice_date() {
        assert_eq!(
            invoice_json(&invoice(|_| {}))["OrderDate"],
            json!("2025-10-01")
        );
    }

    #[test]
    fn invoice_header_has_exactly_the_mapped_fields() {
        let v = invoice_json(&invoice(|_| {}));
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "Description",
                "InvoiceTo",
                "InvoiceToContactPerson",
                "Journal",
                "OrderDate",
                "OrderedBy",
                "PaymentReference",
                "SalesInvoiceLines",
                "Type",
                "YourRef"
            ]
        );
        assert!(v["SalesInvoiceLines"].is_array());
    }

    // ---- Sales invoice lines ---------------------------------------------------------------

    #[test]
    fn line_item_is_the_resolved_guid_in_line_order() {
        let inv = two_line_invoice();
        assert_eq!(line_item_codes(&inv, &settings()), ["CONSULT", "TRAVEL"]);
        let v = invoice_json(&inv);
        assert_eq!(v["SalesInvoiceLines"][0]["Item"], json!(ITEM_1));
        assert_eq!(v["SalesInvoiceLines"][1]["Item"], json!(ITEM_2));
    }

    #[test]
    fn line_description_is_number_dash_name() {
        let v = invoice_json(&two_line_invoice());
        assert_eq!(
            v["SalesInvoiceLines"][0]["Description"],
            json!("1 - Consultancy")
        );
        assert_eq!(
            v["SalesInvoiceLines"][1]["Description"],
            json!("2 - Travel")
        );
    }

    #[test]
    fn line_notes_is_the_line_description_and_omitted_when_absent() {
        let v = invoice_json(&two_line_invoice());
        assert_eq!(
            v["SalesInvoiceLines"][0]["Notes"],
            json!("80 hours senior consultant")
        );
        assert!(v["SalesInvoiceLines"][1].get("Notes").is_none());
    }

    #[test]
    fn line_quantity_is_the_number_one() {
        let v = invoice_json(&two_line_invoice());
        for line in v["SalesInvoiceLines"].as_array().unwrap() {
            assert!(line["Quantity"].is_number(), "{line}");
            assert_eq!(line["Quantity"].as_f64(), Some(1.0));
        }
    }

    #[test]
    fn line_vat_code_is_the_mapped_category_else_the_default() {
        let v = invoice_json(&two_line_invoice());
        assert_eq!(
            v["SalesInvoiceLines"][0]["VATCode"],
            json!("2"),
            "no category: default"
        );
        assert_eq!(
            v["SalesInvoiceLines"][1]["VATCode"],
            json!("1"),
            "category low → 1"
        );
        // An unmapped category falls back to the default code.
        let inv = invoice(|v| v["lines"][0]["tax_category"] = json!("zero"));
        assert_eq!(
            invoice_json(&inv)["SalesInvoiceLines"][0]["VATCode"],
            json!("2")
        );
    }

    #[test]
    fn line_net_price_is_the_amount_as_a_json_number() {
        let v = invoice_json(&two_line_invoice());
        let l0 = &v["SalesInvoiceLines"][0]["NetPrice"];
        assert!(l0.is_f64(), "NetPrice must be a JSON number, got {l0}");
        assert_eq!(l0, &json!(8000.0));
        assert_eq!(serde_json::to_string(l0).unwrap(), "8000.0");
        assert_eq!(v["SalesInvoiceLines"][1]["NetPrice"], json!(45.5));
        // UnitPrice equals NetPrice on every line (Quantity 1), so Exact's printed invoice shows the price.
        for l in v["SalesInvoiceLines"].as_array().unwrap() {
            assert_eq!(l["UnitPrice"], l["NetPrice"], "{l}");
            assert_eq!(l["Quantity"], json!(1.0));
        }
    }

    #[test]
    fn line_start_and_end_time_are_the_period_on_every_line() {
        let v = invoice_json(&two_line_invoice());
        for line in v["SalesInvoiceLines"].as_array().unwrap() {
            assert_eq!(line["StartTime"], json!("2025-09-01"));
            assert_eq!(line["EndTime"], json!("2025-09-30"));
        }
        let mut no_period = two_line_invoice();
        no_period.period = None;
        let v = invoice_json(&no_period);
        for line in v["SalesInvoiceLines"].as_array().unwrap() {
            assert!(
                line.get("StartTime").is_none() && line.get("EndTime").is_none(),
                "{line}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "one item GUID per invoice line")]
    fn missing_line_items_is_a_caller_bug() {
        let inv = two_line_invoice();
        let items = [guid(ITEM_1)];
        let refs = InvoiceRefs {
            account: guid(ACCOUNT),
            contact: guid(CONTACT),
            journal_code: "70",
            line_items: &items,
        };
        let _ = sales_invoice_payload(&inv, &settings(), &refs);
    }

    #[test]
    fn the_design_example_maps_to_this_exact_body() {
        assert_eq!(
            invoice_json(&invoice(|_| {})),
            json!({
                "Journal": "70",
                "Type": 8020,
                "OrderedBy": ACCOUNT,
                "InvoiceTo": ACCOUNT,
                "InvoiceToContactPerson": CONTACT,
                "OrderDate": "2025-10-01",
                "Description": "September 2025 - Website relaunch",
                "YourRef": "INV-2025-0042",
                "PaymentReference": "P-1001 - Website relaunch",
                "SalesInvoiceLines": [{
                    "Item": ITEM_1,
                    "Description": "1 - Consultancy",
                    "Notes": "80 hours senior consultant",
                    "Quantity": 1.0,
                    "VATCode": "2",
                    "UnitPrice": 8000.0,
                    "NetPrice": 8000.0,
                    "StartTime": "2025-09-01",
                    "EndTime": "2025-09-30"
                }]
            })
        );
    }

    #[test]
    fn payloads_read_back_from_their_json() {
        let inv = two_line_invoice();
        let v = invoice_json(&inv);
        let back: SalesInvoicePayload = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
        assert_eq!(back.sales_invoice_lines[1].net_price.to_string(), "45.5");
    }

    // ---- Printed invoice -------------------------------------------------------------------

    #[test]
    fn printed_invoice_carries_id_send_flag_and_date() {
        let date = NaiveDate::from_ymd_opt(2025, 10, 1).unwrap();
        let v = serde_json::to_value(printed_invoice_payload(guid(INVOICE), true, date)).unwrap();
        assert_eq!(
            v,
            json!({"InvoiceID": INVOICE, "SendEmailToCustomer": true, "InvoiceDate": "2025-10-01"})
        );
        let v = serde_json::to_value(printed_invoice_payload(guid(INVOICE), false, date)).unwrap();
        assert_eq!(v["SendEmailToCustomer"], json!(false));
    }

    #[test]
    fn formats_are_number_dash_name() {
        let p = Project {
            number: "P-1".into(),
            name: "Relaunch".into(),
        };
        assert_eq!(payment_reference(&p), "P-1 - Relaunch");
        let inv = two_line_invoice();
        assert_eq!(line_description(&inv.lines[1]), "2 - Travel");
    }
}

//! The sample request bodies (`events/`), byte for byte from fixtures, through the public API to
//! the four Exact bodies.

use chrono::NaiveDate;
use mapping::{
    Delivery, ExactGuid, Invoice, InvoiceRefs, Settings, account_payload, contact_payload,
    line_item_codes, printed_invoice_payload, sales_invoice_payload,
};
use serde_json::json;

const INVOICE_BODY: &[u8] = include_bytes!("fixtures/design-invoice.json");
const SETTINGS_BODY: &[u8] = include_bytes!("fixtures/design-settings.json");

fn guid(s: &str) -> ExactGuid {
    ExactGuid::parse(s).expect("test GUID")
}

#[test]
fn design_invoice_and_settings_map_to_the_exact_bodies() {
    let invoice = Invoice::parse_json(INVOICE_BODY).expect("the sample invoice is valid");
    let settings = Settings::parse_json(SETTINGS_BODY).expect("the settings example is valid");
    assert_eq!(settings.tax_code, "2");
    assert_eq!(settings.delivery, Delivery::Psa);
    assert_eq!(invoice.total().to_string(), "8000.00");

    let account = guid("5b7f4515-b7a0-4839-ac69-574968677d96");
    let contact = guid("9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4");
    let item = guid("097a82a9-6ef7-4edc-8036-3f7559d9ef82");

    assert_eq!(
        serde_json::to_value(account_payload(&invoice.company)).unwrap(),
        json!({"Name": "Acme B.V.", "AddressLine1": "Stationsplein 1", "City": "Utrecht", "Status": "C"})
    );
    assert_eq!(
        serde_json::to_value(contact_payload(&invoice.contact, account)).unwrap(),
        json!({"Account": "5b7f4515-b7a0-4839-ac69-574968677d96", "FirstName": "Jane",
               "LastName": "Doe", "Email": "jane@acme.example"})
    );

    assert_eq!(line_item_codes(&invoice, &settings), ["CONSULT"]);
    let items = [item];
    let refs = InvoiceRefs {
        account,
        contact,
        journal_code: &settings.journal_code,
        line_items: &items,
    };
    let body = serde_json::to_string(&sales_invoice_payload(&invoice, &settings, &refs)).unwrap();
    assert_eq!(
        body,
        concat!(
            r#"{"Journal":"70","Type":8020,"#,
            r#""OrderedBy":"5b7f4515-b7a0-4839-ac69-574968677d96","#,
            r#""InvoiceTo":"5b7f4515-b7a0-4839-ac69-574968677d96","#,
            r#""InvoiceToContactPerson":"9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4","#,
            r#""OrderDate":"2025-10-01","Description":"September 2025 - Website relaunch","#,
            r#""YourRef":"INV-2025-0042","PaymentReference":"P-1001 - Website relaunch","#,
            r#""SalesInvoiceLines":[{"Item":"097a82a9-6ef7-4edc-8036-3f7559d9ef82","#,
            r#""Description":"1 - Consultancy","Notes":"80 hours senior consultant","#,
            r#""Quantity":1.0,"VATCode":"2","UnitPrice":8000.0,"NetPrice":8000.0,"#,
            r#""StartTime":"2025-09-01","EndTime":"2025-09-30"}]}"#
        ),
        "the wire text Exact receives: numbers unquoted, dates yyyy-mm-dd, GUIDs bare"
    );

    let printed = printed_invoice_payload(
        guid("7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a"),
        settings.send_invoice_to_customer,
        invoice.invoice_date,
    );
    assert_eq!(
        serde_json::to_string(&printed).unwrap(),
        r#"{"InvoiceID":"7b9e4c2a-1d3f-4e5a-8b6c-0f1e2d3c4b5a","SendEmailToCustomer":true,"InvoiceDate":"2025-10-01"}"#
    );
    assert_eq!(
        invoice.invoice_date,
        NaiveDate::from_ymd_opt(2025, 10, 1).unwrap()
    );
}

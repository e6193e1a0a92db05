//! The sandbox's whole state: users, divisions and everything in them, tokens, rate counters and queued webhooks.
//!
//! Every field is `pub` so tests can seed and inspect directly (through [`crate::Sandbox::world`]).
//! Times are epoch milliseconds (UTC) of the sandbox clock; money is `f64` rounded to cents.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::webhooks::WebhookDelivery;

/// The registered app (one per sandbox).
#[derive(Clone, Debug)]
pub struct App {
    /// OAuth client id (a GUID string).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// Secret for webhook HashCodes (not the client secret).
    pub webhook_secret: String,
}

/// A person who can sign in at the authorize page.
#[derive(Clone, Debug)]
pub struct User {
    /// `UserID` in `current/Me`.
    pub user_id: Uuid,
    /// Sign-in name; also the `Email` and `UserName`.
    pub login: String,
    /// `FullName`.
    pub full_name: String,
    /// `FirstName`.
    pub first_name: String,
    /// `LastName`.
    pub last_name: String,
    /// Culture, e.g. `nl-NL`; `nl-*` users get Dutch error messages, everyone else English.
    pub language_code: String,
    /// Divisions this user (and so a token of this user) may use.
    pub divisions: Vec<u32>,
    /// The division selected in Exact: `CurrentDivision` in `current/Me`.
    pub current_division: u32,
}

/// One administration with its data.
#[derive(Clone, Debug, Default)]
pub struct Division {
    /// Division number (used in URLs).
    pub code: u32,
    /// Name (`Description` in `system/Divisions`).
    pub description: String,
    /// ISO country code (`NL`, `BE`, `GB`, ...).
    pub country: String,
    /// Currency (`EUR`, `GBP`).
    pub currency: String,
    /// Sales payment condition used when neither the invoice nor the account has one. `None`: processing such an invoice fails.
    pub default_payment_condition: Option<String>,
    /// `crm/Accounts`.
    pub accounts: Vec<Account>,
    /// `crm/Contacts`.
    pub contacts: Vec<Contact>,
    /// `logistics/Items`.
    pub items: Vec<Item>,
    /// `financial/Journals`.
    pub journals: Vec<Journal>,
    /// `vat/VATCodes`.
    pub vat_codes: Vec<VatCode>,
    /// `cashflow/PaymentConditions`.
    pub payment_conditions: Vec<PaymentCondition>,
    /// `salesinvoice/SalesInvoices` (lines inline).
    pub sales_invoices: Vec<SalesInvoice>,
    /// `cashflow/Receivables`: created when an invoice is processed; split by partial payments.
    pub receivables: Vec<Receivable>,
    /// Payments booked through [`crate::Sandbox::pay_invoice`].
    pub bank_entries: Vec<BankEntry>,
    /// `webhooks/WebhookSubscriptions` of every client.
    pub webhook_subscriptions: Vec<WebhookSubscription>,
    /// Invoice e-mails "sent" when processing with `SendEmailToCustomer`.
    pub emails_sent: Vec<SentEmail>,
    /// `documents/Documents`.
    pub documents: Vec<Document>,
    /// `documents/DocumentAttachments`.
    pub document_attachments: Vec<DocumentAttachment>,
    /// The next automatic account code (before padding).
    pub next_account_code: u64,
}

/// `crm/Accounts`.
#[derive(Clone, Debug, Default)]
pub struct Account {
    pub id: Uuid,
    /// 18 characters, right-aligned with leading spaces.
    pub code: String,
    pub name: String,
    /// `A`, `S`, `P` or `C`.
    pub status: Option<String>,
    pub email: Option<String>,
    pub address_line1: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
    pub vat_number: Option<String>,
    pub chamber_of_commerce: Option<String>,
    /// Default sales payment condition code.
    pub payment_condition_sales: Option<String>,
    pub sales_vat_code: Option<String>,
    pub main_contact: Option<Uuid>,
    pub blocked: bool,
    /// A supplier (`IsSupplier`); with no customer status (`A`) it cannot be invoiced.
    pub is_supplier: bool,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// `crm/Contacts`.
#[derive(Clone, Debug, Default)]
pub struct Contact {
    pub id: Uuid,
    /// The account it belongs to.
    pub account: Uuid,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// `logistics/Items`.
#[derive(Clone, Debug, Default)]
pub struct Item {
    pub id: Uuid,
    pub code: String,
    pub description: String,
    pub is_sales_item: bool,
    pub sales_vat_code: Option<String>,
    pub start_date_ms: Option<i64>,
    /// Past end date: the item can no longer be used on invoices.
    pub end_date_ms: Option<i64>,
    pub unit: String,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// When a sales journal gives an invoice its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Numbering {
    /// At processing (`PrintedSalesInvoices`): the POST answer has `InvoiceNumber: null`.
    #[default]
    AtProcessing,
    /// At entry: the POST answer already carries the number.
    AtEntry,
}

/// `financial/Journals`.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    pub id: Uuid,
    pub code: String,
    pub description: String,
    /// 10 cash, 12 bank, 20 sales, 22 purchase, 90 general.
    pub journal_type: i32,
    pub is_blocked: bool,
    /// Sales journals only.
    pub numbering: Numbering,
    /// Last sequence used per two-digit year (numbers look like `25700001`).
    pub last_sequence: BTreeMap<i32, u32>,
}

/// `vat/VATCodes`.
#[derive(Clone, Debug, Default)]
pub struct VatCode {
    pub id: Uuid,
    /// Stored as Exact does: padded to 3 characters, left-aligned (`"2  "`).
    pub code: String,
    pub description: String,
    /// Fraction (0.21).
    pub percentage: f64,
    /// `S` sales, `P` purchase, `B` both.
    pub vat_transaction_type: String,
    pub is_blocked: bool,
}

/// `cashflow/PaymentConditions`.
#[derive(Clone, Debug, Default)]
pub struct PaymentCondition {
    pub id: Uuid,
    pub code: String,
    pub description: String,
    pub payment_days: i32,
}

/// `salesinvoice/SalesInvoices`.
#[derive(Clone, Debug, Default)]
pub struct SalesInvoice {
    pub invoice_id: Uuid,
    /// Journal code.
    pub journal: String,
    /// 8020 invoice, 8021 credit note.
    pub invoice_type: i32,
    pub ordered_by: Uuid,
    pub invoice_to: Uuid,
    pub invoice_to_contact_person: Option<Uuid>,
    pub ordered_by_contact_person: Option<Uuid>,
    pub description: Option<String>,
    pub your_ref: Option<String>,
    pub payment_reference: Option<String>,
    pub payment_condition: Option<String>,
    pub currency: String,
    pub order_date_ms: Option<i64>,
    pub invoice_date_ms: Option<i64>,
    pub due_date_ms: Option<i64>,
    pub invoice_number: Option<i64>,
    /// 20 open, 50 processed.
    pub status: i32,
    pub remarks: Option<String>,
    pub amount_fc_excl_vat: f64,
    pub vat_amount_fc: f64,
    /// Including VAT (= `AmountDC`: one currency here).
    pub amount_fc: f64,
    pub lines: Vec<SalesInvoiceLine>,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// `Document`: the linked document (its files go with the invoice's e-mail here).
    pub document: Option<Uuid>,
}

/// `salesinvoice/SalesInvoiceLines`.
#[derive(Clone, Debug, Default)]
pub struct SalesInvoiceLine {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub line_number: i32,
    pub item: Uuid,
    pub item_code: String,
    pub item_description: String,
    pub description: Option<String>,
    pub quantity: f64,
    pub unit_price: f64,
    pub net_price: f64,
    pub discount: f64,
    /// NetPrice × Quantity, excluding VAT.
    pub amount_fc: f64,
    /// The padded VAT code (`"2  "`).
    pub vat_code: String,
    pub vat_percentage: f64,
    pub vat_amount_fc: f64,
    pub notes: Option<String>,
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    pub delivery_date_ms: Option<i64>,
    pub unit_code: Option<String>,
}

/// `cashflow/Receivables`: one row per outstanding (or matched) amount.
///
/// Partial payments split rows, as Exact's matching does: paying part of an open row turns that row into a
/// matched row of the paid amount (`IsFullyPaid` true, `Status` 50) and adds an open row for the rest
/// (same `EntryID` and `TransactionEntryID`). An invoice is paid when every row is fully paid.
#[derive(Clone, Debug, Default)]
pub struct Receivable {
    pub id: Uuid,
    pub entry_id: Uuid,
    /// The sales entry: equal to the invoice's `InvoiceID`.
    pub transaction_entry_id: Uuid,
    pub invoice_number: Option<i64>,
    pub invoice_date_ms: Option<i64>,
    pub due_date_ms: Option<i64>,
    pub journal: String,
    pub your_ref: Option<String>,
    pub payment_reference: Option<String>,
    pub description: Option<String>,
    pub account: Uuid,
    pub currency: String,
    /// Amount of this row, including VAT.
    pub amount_dc: f64,
    pub is_fully_paid: bool,
    /// 20 open, 50 matched.
    pub status: i32,
    pub last_payment_date_ms: Option<i64>,
    /// When the row stopped being outstanding.
    pub end_date_ms: Option<i64>,
}

/// A payment booked by [`crate::Sandbox::pay_invoice`].
#[derive(Clone, Debug, Default)]
pub struct BankEntry {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub amount: f64,
    pub date_ms: i64,
    /// Undone by [`crate::Sandbox::reverse_payments`].
    pub reversed: bool,
}

/// `webhooks/WebhookSubscriptions`.
#[derive(Clone, Debug, Default)]
pub struct WebhookSubscription {
    pub id: Uuid,
    pub topic: String,
    pub callback_url: String,
    pub client_id: String,
    pub user_id: Uuid,
    pub division: u32,
    pub description: Option<String>,
    pub created_ms: i64,
}

/// An invoice e-mail Exact "sent".
#[derive(Clone, Debug)]
pub struct SentEmail {
    pub invoice_id: Uuid,
    pub invoice_number: Option<i64>,
    pub to: String,
    pub at_ms: i64,
    /// The file names of the invoice's linked document, which the e-mail carries here. Whether Exact's own e-mail
    /// carries them is not documented (`docs/exact-online.md` §5.9): the sandbox assumes it does.
    pub attachments: Vec<String>,
}

/// `documents/Documents`.
#[derive(Clone, Debug, Default)]
pub struct Document {
    pub id: Uuid,
    pub subject: String,
    pub document_type: i32,
    pub account: Option<Uuid>,
    pub created_ms: i64,
}

/// `documents/DocumentAttachments`: one file of a document.
#[derive(Clone, Debug, Default)]
pub struct DocumentAttachment {
    pub id: Uuid,
    pub document: Uuid,
    pub file_name: String,
    /// The decoded bytes.
    pub content: Vec<u8>,
}

/// OAuth state.
#[derive(Clone, Debug, Default)]
pub struct TokenState {
    /// Authorization codes by value.
    pub codes: HashMap<String, AuthCode>,
    /// Access tokens by value.
    pub access_tokens: HashMap<String, AccessToken>,
    /// Refresh tokens by value (used ones are kept to answer "Old refresh token used").
    pub refresh_tokens: HashMap<String, RefreshToken>,
}

/// A single-use authorization code.
#[derive(Clone, Debug)]
pub struct AuthCode {
    pub login: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub expires_at_ms: i64,
    pub used: bool,
}

/// An access token (600 s).
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub login: String,
    pub client_id: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A refresh token: single use, 30 days.
#[derive(Clone, Debug)]
pub struct RefreshToken {
    pub login: String,
    pub client_id: String,
    /// When it (and its access token) was issued; a refresh before +570 s is refused.
    pub issued_at_ms: i64,
    /// Set when it was exchanged; reuse answers 401 "Old refresh token used."
    pub used_at_ms: Option<i64>,
}

/// Calls counted for one (client, division).
#[derive(Clone, Debug, Default)]
pub struct RateCounter {
    /// Start of the current minute window.
    pub minute_start_ms: i64,
    pub minute_used: u32,
    /// Start (00:00 UTC) of the current day window.
    pub day_start_ms: i64,
    pub day_used: u32,
}

/// Everything the sandbox knows.
#[derive(Clone, Debug)]
pub struct World {
    /// The app (client id and secrets).
    pub app: App,
    /// Users who can sign in.
    pub users: Vec<User>,
    /// Divisions by number.
    pub divisions: BTreeMap<u32, Division>,
    /// Codes and tokens.
    pub tokens: TokenState,
    /// Rate-limit counters by (client id, division).
    pub rate: HashMap<(String, u32), RateCounter>,
    /// Webhook deliveries queued and not yet delivered or taken.
    pub webhook_queue: Vec<WebhookDelivery>,
}

/// Pad an account code as Exact stores it: 18 characters, right-aligned.
pub fn pad_account_code(code: &str) -> String {
    format!("{:>18}", code.trim())
}

/// Pad a VAT code as Exact stores it: 3 characters, left-aligned.
pub fn pad_vat_code(code: &str) -> String {
    format!("{:<3}", code.trim())
}

pub(crate) fn new_id() -> Uuid {
    Uuid::new_v4()
}

impl World {
    /// An empty world for `app`.
    pub fn empty(app: App) -> Self {
        Self {
            app,
            users: Vec::new(),
            divisions: BTreeMap::new(),
            tokens: TokenState::default(),
            rate: HashMap::new(),
            webhook_queue: Vec::new(),
        }
    }

    /// The user with this login (case-insensitive).
    pub fn user(&self, login: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.login.eq_ignore_ascii_case(login))
    }

    /// Mutable user by login.
    pub fn user_mut(&mut self, login: &str) -> Option<&mut User> {
        self.users
            .iter_mut()
            .find(|u| u.login.eq_ignore_ascii_case(login))
    }

    /// Add a user.
    pub fn add_user(&mut self, user: User) -> &mut User {
        self.users.push(user);
        let last = self.users.len() - 1;
        &mut self.users[last]
    }

    /// Add a division (replacing one with the same code).
    pub fn add_division(&mut self, division: Division) -> &mut Division {
        let code = division.code;
        self.divisions.insert(code, division);
        self.division_mut(code)
    }

    /// A division by number.
    pub fn division(&self, code: u32) -> Option<&Division> {
        self.divisions.get(&code)
    }

    /// A division by number, for seeding. Panics when it does not exist (a test setup mistake).
    pub fn division_mut(&mut self, code: u32) -> &mut Division {
        match self.divisions.get_mut(&code) {
            Some(d) => d,
            None => panic!("sandbox: no division {code}"),
        }
    }

    /// Add an account named `name` (automatic code) to `division`; set more fields on the returned account.
    pub fn add_account(&mut self, division: u32, name: &str) -> &mut Account {
        self.division_mut(division).add_account(name, 0)
    }

    /// Add a contact to an account.
    pub fn add_contact(
        &mut self,
        division: u32,
        account: Uuid,
        first_name: &str,
        last_name: &str,
        email: Option<&str>,
    ) -> &mut Contact {
        self.division_mut(division)
            .add_contact(account, first_name, last_name, email, 0)
    }

    /// Add an item (a sales item when `is_sales_item`, sales VAT code `2`).
    pub fn add_item(
        &mut self,
        division: u32,
        code: &str,
        description: &str,
        is_sales_item: bool,
    ) -> &mut Item {
        self.division_mut(division)
            .add_item(code, description, is_sales_item, 0)
    }

    /// Add `n` customer accounts named `Account 0001`, `Account 0002`, ... (for paging tests); returns their IDs.
    pub fn seed_accounts(&mut self, division: u32, n: usize) -> Vec<Uuid> {
        let d = self.division_mut(division);
        (1..=n)
            .map(|i| {
                let a = d.add_account(&format!("Account {i:04}"), 0);
                a.status = Some("C".into());
                a.id
            })
            .collect()
    }

    /// The sales invoice with this ID in `division`.
    pub fn invoice(&self, division: u32, invoice_id: Uuid) -> Option<&SalesInvoice> {
        self.division(division)?
            .sales_invoices
            .iter()
            .find(|i| i.invoice_id == invoice_id)
    }
}

impl Division {
    /// An empty division.
    pub fn new(code: u32, description: &str, country: &str, currency: &str) -> Self {
        Self {
            code,
            description: description.into(),
            country: country.into(),
            currency: currency.into(),
            next_account_code: 1,
            ..Self::default()
        }
    }

    /// Add an account with the next automatic code.
    pub fn add_account(&mut self, name: &str, now_ms: i64) -> &mut Account {
        let code = pad_account_code(&self.next_account_code.to_string());
        self.next_account_code += 1;
        self.accounts.push(Account {
            id: new_id(),
            code,
            name: name.into(),
            // A customer unless the test says otherwise (set `status`, `is_supplier`, `blocked`).
            status: Some("C".into()),
            created_ms: now_ms,
            modified_ms: now_ms,
            ..Account::default()
        });
        let last = self.accounts.len() - 1;
        &mut self.accounts[last]
    }

    /// Add a contact.
    pub fn add_contact(
        &mut self,
        account: Uuid,
        first_name: &str,
        last_name: &str,
        email: Option<&str>,
        now_ms: i64,
    ) -> &mut Contact {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.contacts.push(Contact {
            id: new_id(),
            account,
            first_name: non_empty(first_name),
            last_name: non_empty(last_name),
            email: email.map(str::to_string),
            created_ms: now_ms,
            modified_ms: now_ms,
            ..Contact::default()
        });
        let last = self.contacts.len() - 1;
        &mut self.contacts[last]
    }

    /// Add an item.
    pub fn add_item(
        &mut self,
        code: &str,
        description: &str,
        is_sales_item: bool,
        now_ms: i64,
    ) -> &mut Item {
        self.items.push(Item {
            id: new_id(),
            code: code.into(),
            description: description.into(),
            is_sales_item,
            sales_vat_code: Some(pad_vat_code("2")),
            unit: "pc".into(),
            created_ms: now_ms,
            modified_ms: now_ms,
            ..Item::default()
        });
        let last = self.items.len() - 1;
        &mut self.items[last]
    }

    /// Add a journal.
    pub fn add_journal(
        &mut self,
        code: &str,
        description: &str,
        journal_type: i32,
        numbering: Numbering,
        is_blocked: bool,
    ) -> &mut Journal {
        self.journals.push(Journal {
            id: new_id(),
            code: code.into(),
            description: description.into(),
            journal_type,
            is_blocked,
            numbering,
            last_sequence: BTreeMap::new(),
        });
        let last = self.journals.len() - 1;
        &mut self.journals[last]
    }

    /// Add a VAT code (stored padded).
    pub fn add_vat_code(
        &mut self,
        code: &str,
        description: &str,
        percentage: f64,
        vat_transaction_type: &str,
        is_blocked: bool,
    ) -> &mut VatCode {
        self.vat_codes.push(VatCode {
            id: new_id(),
            code: pad_vat_code(code),
            description: description.into(),
            percentage,
            vat_transaction_type: vat_transaction_type.into(),
            is_blocked,
        });
        let last = self.vat_codes.len() - 1;
        &mut self.vat_codes[last]
    }

    /// Add a payment condition.
    pub fn add_payment_condition(
        &mut self,
        code: &str,
        description: &str,
        payment_days: i32,
    ) -> &mut PaymentCondition {
        self.payment_conditions.push(PaymentCondition {
            id: new_id(),
            code: code.into(),
            description: description.into(),
            payment_days,
        });
        let last = self.payment_conditions.len() - 1;
        &mut self.payment_conditions[last]
    }

    /// Account by ID.
    pub fn account(&self, id: Uuid) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// Contact by ID.
    pub fn contact(&self, id: Uuid) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id == id)
    }

    /// Item by code (exact, trimmed).
    pub fn item_by_code(&self, code: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.code.trim() == code.trim())
    }

    /// Journal by code (trimmed).
    pub fn journal(&self, code: &str) -> Option<&Journal> {
        self.journals.iter().find(|j| j.code.trim() == code.trim())
    }

    /// VAT code by code, compared trimmed.
    pub fn vat_code(&self, code: &str) -> Option<&VatCode> {
        self.vat_codes.iter().find(|v| v.code.trim() == code.trim())
    }

    /// Payment condition by code (trimmed).
    pub fn payment_condition(&self, code: &str) -> Option<&PaymentCondition> {
        self.payment_conditions
            .iter()
            .find(|p| p.code.trim() == code.trim())
    }
}

//! The Exact calls the product makes, one method each, with the fewest fields that serve it.

use mapping::{Division, ExactGuid};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::ExactClient;
use crate::entities::{
    AccountRef, AccountTerms, ContactRef, DivisionInfo, DocumentAttachmentRef, DocumentRef, Item,
    Journal, Me, PaymentCondition, PrintResult, Receivable, SalesInvoice, VatCode,
    WebhookSubscription,
};
use crate::error::{ErrorKind, ExactError};
use crate::odata::{Filter, Lit, Page, parse_page, query_string};

pub const ME_FIELDS: &[&str] = &[
    "CurrentDivision",
    "UserID",
    "FullName",
    "Email",
    "LanguageCode",
];
pub const DIVISION_FIELDS: &[&str] = &["Code", "Description", "Country"];
pub const ACCOUNT_FIELDS: &[&str] = &["ID", "Name", "Code", "Status", "IsSupplier", "Blocked"];
pub const CONTACT_FIELDS: &[&str] = &["ID", "Account", "Email"];
pub const ITEM_FIELDS: &[&str] = &[
    "ID",
    "Code",
    "Description",
    "IsSalesItem",
    "SalesVatCode",
    "EndDate",
];
pub const JOURNAL_FIELDS: &[&str] = &["Code", "Description", "Type", "IsBlocked"];
pub const VAT_CODE_FIELDS: &[&str] = &[
    "ID",
    "Code",
    "Description",
    "Percentage",
    "VATTransactionType",
    "IsBlocked",
];
pub const SALES_INVOICE_FIELDS: &[&str] = &[
    "InvoiceID",
    "InvoiceNumber",
    "Status",
    "YourRef",
    "OrderedBy",
    "Journal",
    "AmountDC",
    "InvoiceDate",
];
pub const RECEIVABLE_FIELDS: &[&str] = &[
    "ID",
    "EntryID",
    "InvoiceNumber",
    "Journal",
    "YourRef",
    "AmountDC",
    "IsFullyPaid",
    "Status",
    "LastPaymentDate",
    "EndDate",
    "TransactionEntryID",
    "Account",
];
pub const WEBHOOK_FIELDS: &[&str] = &["ID", "Topic", "CallbackURL"];
pub const ACCOUNT_TERMS_FIELDS: &[&str] =
    &["ID", "Name", "Status", "Blocked", "PaymentConditionSales"];
pub const PAYMENT_CONDITION_FIELDS: &[&str] = &["Code", "Description"];
pub const DOCUMENT_FIELDS: &[&str] = &["ID"];
pub const DOCUMENT_ATTACHMENT_FIELDS: &[&str] = &["ID", "FileName"];

/// One page is plenty for a lookup by name or e-mail, and costs exactly one call.
const LOOKUP_TOP: u32 = 60;

/// The answer of a POST that creates an entity keyed by `ID`.
#[derive(Deserialize)]
pub(crate) struct Created {
    #[serde(rename = "ID")]
    pub(crate) id: ExactGuid,
}

impl ExactClient {
    /// `GET {host}/api/v1/current/Me?$select=…` — the only call without a division in its path;
    /// used once, at connect time, to learn the administration the user had open.
    pub async fn me(&self) -> Result<Me, ExactError> {
        const OP: &str = "me";
        let q =
            query_string(None, ME_FIELDS, None, None).map_err(|m| ExactError::protocol(OP, m))?;
        let url = self.url(OP, "/api/v1/current/Me", Some(&q))?;
        let ans = self.execute(OP, Method::GET, &url, None, None).await?;
        let (rows, _) = parse_page::<Me>(&ans.body).map_err(|m| ExactError::protocol(OP, m))?;
        rows.into_iter()
            .next()
            .ok_or_else(|| ExactError::protocol(OP, "current/Me returned no row"))
    }

    /// The administration `code` as listed by `system/Divisions` (name, country), if the user may use it.
    pub async fn division_info(&self, code: Division) -> Result<Option<DivisionInfo>, ExactError> {
        let f = Filter::eq("Code", Lit::Int(i64::from(code.get())));
        let rows = self
            .list_page(
                "division_info",
                "system/Divisions",
                &f,
                DIVISION_FIELDS,
                Some(1),
            )
            .await?;
        Ok(rows.items.into_iter().next())
    }

    /// Accounts whose name is exactly `name` (Exact compares case-insensitively). Names are not
    /// unique: the caller picks deterministically.
    pub async fn find_accounts_by_name(&self, name: &str) -> Result<Vec<AccountRef>, ExactError> {
        let f = Filter::eq("Name", Lit::Str(name));
        Ok(self
            .list_page(
                "find_accounts_by_name",
                "crm/Accounts",
                &f,
                ACCOUNT_FIELDS,
                Some(LOOKUP_TOP),
            )
            .await?
            .items)
    }

    /// Creates an account; answers its ID. Not retried: on `OutcomeUnknown`, look it up by name first.
    pub async fn create_account(&self, body: &impl Serialize) -> Result<ExactGuid, ExactError> {
        Ok(self
            .post::<Created>("create_account", "crm/Accounts", body)
            .await?
            .id)
    }

    /// Contacts with this e-mail address, on any account (the caller checks `account`).
    pub async fn find_contacts_by_email(&self, email: &str) -> Result<Vec<ContactRef>, ExactError> {
        let f = Filter::eq("Email", Lit::Str(email));
        Ok(self
            .list_page(
                "find_contacts_by_email",
                "crm/Contacts",
                &f,
                CONTACT_FIELDS,
                Some(LOOKUP_TOP),
            )
            .await?
            .items)
    }

    /// Creates a contact; answers its ID.
    pub async fn create_contact(&self, body: &impl Serialize) -> Result<ExactGuid, ExactError> {
        Ok(self
            .post::<Created>("create_contact", "crm/Contacts", body)
            .await?
            .id)
    }

    /// The item with this code (exact match).
    pub async fn find_item(&self, code: &str) -> Result<Option<Item>, ExactError> {
        let f = Filter::eq("Code", Lit::Str(code));
        Ok(self
            .list_page("find_item", "logistics/Items", &f, ITEM_FIELDS, Some(1))
            .await?
            .items
            .into_iter()
            .next())
    }

    /// The journal with this code.
    pub async fn find_journal(&self, code: &str) -> Result<Option<Journal>, ExactError> {
        let f = Filter::eq("Code", Lit::Str(code));
        Ok(self
            .list_page(
                "find_journal",
                "financial/Journals",
                &f,
                JOURNAL_FIELDS,
                Some(1),
            )
            .await?
            .items
            .into_iter()
            .next())
    }

    /// The VAT code, compared trimmed (`trim(Code) eq '2'`: Exact stores it padded).
    pub async fn find_vat_code(&self, code: &str) -> Result<Option<VatCode>, ExactError> {
        let f = Filter::eq_trim("Code", Lit::Str(code.trim()));
        Ok(self
            .list_page(
                "find_vat_code",
                "vat/VATCodes",
                &f,
                VAT_CODE_FIELDS,
                Some(1),
            )
            .await?
            .items
            .into_iter()
            .next())
    }

    /// Creates a sales invoice with its lines inline (`SalesInvoiceLines`). Amounts in `body` must
    /// serialise as JSON numbers. Never retried: on `OutcomeUnknown`, look it up by `YourRef` first.
    pub async fn create_sales_invoice(
        &self,
        body: &impl Serialize,
    ) -> Result<SalesInvoice, ExactError> {
        self.post("create_sales_invoice", "salesinvoice/SalesInvoices", body)
            .await
    }

    /// The invoice by its ID; `None` when Exact does not know it.
    pub async fn get_sales_invoice(
        &self,
        id: ExactGuid,
    ) -> Result<Option<SalesInvoice>, ExactError> {
        self.get_by_key(
            "get_sales_invoice",
            "salesinvoice/SalesInvoices",
            id,
            SALES_INVOICE_FIELDS,
            None,
        )
        .await
    }

    /// Invoices carrying our reference in `YourRef`, optionally only those ordered by `account`.
    pub async fn find_sales_invoices_by_your_ref(
        &self,
        your_ref: &str,
        account: Option<ExactGuid>,
    ) -> Result<Vec<SalesInvoice>, ExactError> {
        let mut f = Filter::eq("YourRef", Lit::Str(your_ref));
        if let Some(a) = account {
            f = f.and(Filter::eq("OrderedBy", Lit::Guid(a)));
        }
        self.list(
            "find_sales_invoices_by_your_ref",
            "salesinvoice/SalesInvoices",
            &f,
            SALES_INVOICE_FIELDS,
            None,
        )
        .await
    }

    /// Creates a `documents/Documents` record (the specification pages' document); answers its ID. Never retried:
    /// on `OutcomeUnknown`, look it up with [`ExactClient::find_documents`] first. Exact's reference marks
    /// `Subject` and `Type` mandatory (`docs/exact-online.md` §5.9).
    pub async fn create_document(&self, body: &impl Serialize) -> Result<ExactGuid, ExactError> {
        Ok(self
            .post::<Created>("create_document", "documents/Documents", body)
            .await?
            .id)
    }

    /// Documents with this subject on this account: the one a lost creation may have made.
    pub async fn find_documents(
        &self,
        subject: &str,
        account: ExactGuid,
    ) -> Result<Vec<DocumentRef>, ExactError> {
        let f =
            Filter::eq("Subject", Lit::Str(subject)).and(Filter::eq("Account", Lit::Guid(account)));
        Ok(self
            .list_page(
                "find_documents",
                "documents/Documents",
                &f,
                DOCUMENT_FIELDS,
                Some(LOOKUP_TOP),
            )
            .await?
            .items)
    }

    /// Attaches one file (`Document`, `FileName`, `Attachment` as base64) to a document; answers its ID. Never
    /// retried: on `OutcomeUnknown`, list the document's files ([`ExactClient::document_attachments`]) before
    /// sending it again. Exact documents no size limit for one file; ours is 4 MB for all files of a push.
    pub async fn create_document_attachment(
        &self,
        body: &impl Serialize,
    ) -> Result<ExactGuid, ExactError> {
        Ok(self
            .post::<Created>(
                "create_document_attachment",
                "documents/DocumentAttachments",
                body,
            )
            .await?
            .id)
    }

    /// The files attached to a document (IDs and names, not their content).
    pub async fn document_attachments(
        &self,
        document: ExactGuid,
    ) -> Result<Vec<DocumentAttachmentRef>, ExactError> {
        let f = Filter::eq("Document", Lit::Guid(document));
        self.list(
            "document_attachments",
            "documents/DocumentAttachments",
            &f,
            DOCUMENT_ATTACHMENT_FIELDS,
            None,
        )
        .await
    }

    /// Processes (books, numbers, optionally e-mails) an open invoice via `PrintedSalesInvoices`.
    /// The answer carries no invoice number; its `*Error` fields must be checked.
    pub async fn print_sales_invoice(
        &self,
        body: &impl Serialize,
    ) -> Result<PrintResult, ExactError> {
        self.post(
            "print_sales_invoice",
            "salesinvoice/PrintedSalesInvoices",
            body,
        )
        .await
    }

    /// Receivables matching `filter`, all pages.
    pub async fn receivables(&self, filter: &Filter) -> Result<Vec<Receivable>, ExactError> {
        self.list(
            "receivables",
            "cashflow/Receivables",
            filter,
            RECEIVABLE_FIELDS,
            None,
        )
        .await
    }

    /// This app's webhook subscriptions in this division.
    pub async fn list_webhook_subscriptions(&self) -> Result<Vec<WebhookSubscription>, ExactError> {
        // Every GET carries a filter; subscriptions belong to a division, so that is the natural one.
        let f = Filter::eq("Division", Lit::Int(i64::from(self.division().get())));
        self.list(
            "list_webhook_subscriptions",
            "webhooks/WebhookSubscriptions",
            &f,
            WEBHOOK_FIELDS,
            None,
        )
        .await
    }

    /// Subscribes `callback_url` to `topic`. Exact answers 500 "Data already exists" when the
    /// subscription is there already: that is success.
    pub async fn create_webhook_subscription(
        &self,
        topic: &str,
        callback_url: &str,
    ) -> Result<(), ExactError> {
        let body = serde_json::json!({ "Topic": topic, "CallbackURL": callback_url });
        match self
            .post_raw(
                "create_webhook_subscription",
                "webhooks/WebhookSubscriptions",
                &body,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.kind == ErrorKind::Validation
                    && e.message.as_deref().is_some_and(already_exists) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a subscription; one that is already gone counts as removed.
    pub async fn delete_webhook_subscription(&self, id: ExactGuid) -> Result<(), ExactError> {
        match self
            .delete_by_key(
                "delete_webhook_subscription",
                "webhooks/WebhookSubscriptions",
                id,
            )
            .await
        {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// Exact's "Data already exists" (also accepted in Dutch, as a Dutch user gets it).
pub(crate) fn already_exists(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("already exists") || m.contains("bestaat al") || m.contains("bestaan al")
}

impl ExactClient {
    // ---- read-only lookups of the connection test's dry run -------------------------------------------------

    /// The first page (at most 60 rows, one call) of the division's payment conditions. Exact pages GETs at 60
    /// rows; a division with more conditions answers only the first 60 here.
    pub async fn payment_conditions(&self) -> Result<Page<PaymentCondition>, ExactError> {
        // Every GET carries a filter; the division is the natural one.
        let f = Filter::eq("Division", Lit::Int(i64::from(self.division().get())));
        self.list_page(
            "list_payment_conditions",
            "cashflow/PaymentConditions",
            &f,
            PAYMENT_CONDITION_FIELDS,
            Some(LOOKUP_TOP),
        )
        .await
    }

    /// One account with its sales payment condition; `None` when Exact has no such account (404).
    pub async fn account_terms(&self, id: ExactGuid) -> Result<Option<AccountTerms>, ExactError> {
        self.get_by_key(
            "get_account_terms",
            "crm/Accounts",
            id,
            ACCOUNT_TERMS_FIELDS,
            None,
        )
        .await
    }

    /// Accounts named exactly `name`, with their sales payment condition (one page, one call).
    pub async fn find_account_terms_by_name(
        &self,
        name: &str,
    ) -> Result<Vec<AccountTerms>, ExactError> {
        let f = Filter::eq("Name", Lit::Str(name));
        Ok(self
            .list_page(
                "find_account_terms_by_name",
                "crm/Accounts",
                &f,
                ACCOUNT_TERMS_FIELDS,
                Some(LOOKUP_TOP),
            )
            .await?
            .items)
    }
}

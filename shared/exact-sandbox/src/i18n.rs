//! Business-validation messages in the user's language (Dutch for `nl-*`, English otherwise).
//! Framework messages (OData parsing, mandatory filtering, request-stream errors) stay English, as in Exact.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Nl,
}

impl Lang {
    pub(crate) fn from_language_code(code: &str) -> Self {
        if code.to_ascii_lowercase().starts_with("nl") {
            Lang::Nl
        } else {
            Lang::En
        }
    }
}

/// Field names as Exact shows them in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Label {
    PaymentCondition,
    OrderedBy,
    InvoiceTo,
    InvoiceToContactPerson,
    OrderedByContactPerson,
    InvoiceLines,
    Journal,
    Item,
    VatCode,
    Account,
    Name,
    Type,
    Invoice,
    Topic,
    CallbackUrl,
    Status,
    Code,
    Subject,
    Document,
    FileName,
    Attachment,
}

impl Label {
    fn text(self, lang: Lang) -> &'static str {
        use Label::*;
        match (self, lang) {
            (PaymentCondition, Lang::En) => "Payment condition",
            (PaymentCondition, Lang::Nl) => "Betalingsconditie",
            (OrderedBy, Lang::En) => "Ordered by",
            (OrderedBy, Lang::Nl) => "Besteld door",
            (InvoiceTo, Lang::En) => "Invoice to",
            (InvoiceTo, Lang::Nl) => "Factuur voor",
            (InvoiceToContactPerson, Lang::En) => "Invoice to contact person",
            (InvoiceToContactPerson, Lang::Nl) => "Factuur voor contactpersoon",
            (OrderedByContactPerson, Lang::En) => "Ordered by contact person",
            (OrderedByContactPerson, Lang::Nl) => "Besteld door contactpersoon",
            (InvoiceLines, Lang::En) => "Invoice lines",
            (InvoiceLines, Lang::Nl) => "Factuurregels",
            (Journal, Lang::En) => "Journal",
            (Journal, Lang::Nl) => "Dagboek",
            (Item, Lang::En) => "Item",
            (Item, Lang::Nl) => "Artikel",
            (VatCode, Lang::En) => "VAT code",
            (VatCode, Lang::Nl) => "Btw-code",
            (Account, Lang::En) => "Account",
            (Account, Lang::Nl) => "Relatie",
            (Name, Lang::En) => "Name",
            (Name, Lang::Nl) => "Naam",
            (Type, Lang::En) => "Type",
            (Type, Lang::Nl) => "Soort",
            (Invoice, Lang::En) => "Invoice",
            (Invoice, Lang::Nl) => "Factuur",
            (Topic, Lang::En) => "Topic",
            (Topic, Lang::Nl) => "Onderwerp",
            (CallbackUrl, Lang::En) => "Callback URL",
            (CallbackUrl, Lang::Nl) => "Callback-URL",
            (Status, Lang::En) => "Status",
            (Status, Lang::Nl) => "Status",
            (Code, Lang::En) => "Code",
            (Code, Lang::Nl) => "Code",
            (Subject, Lang::En) => "Subject",
            (Subject, Lang::Nl) => "Onderwerp",
            (Document, Lang::En) => "Document",
            (Document, Lang::Nl) => "Document",
            (FileName, Lang::En) => "File name",
            (FileName, Lang::Nl) => "Bestandsnaam",
            (Attachment, Lang::En) => "Attachment",
            (Attachment, Lang::Nl) => "Bijlage",
        }
    }
}

/// A business message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Msg {
    Mandatory(Label),
    InvalidReference(Label),
    InvalidValue(Label),
    Blocked(Label),
    /// The relation's type does not allow it (a supplier-only account as `OrderedBy`).
    InvalidType(Label),
    Duplicate(Label),
    NotSalesJournal,
    ItemNotSalesItem(String),
    ItemEnded(String),
    VatNotForSales(String),
    AlreadyProcessed,
    ContactNameRequired,
    EmailSent(String),
    NoEmailAddress,
    DocumentCreated,
}

impl Msg {
    pub(crate) fn text(&self, lang: Lang) -> String {
        use Msg::*;
        let nl = lang == Lang::Nl;
        match self {
            Mandatory(l) if nl => format!("Verplicht: {}", l.text(lang)),
            Mandatory(l) => format!("Mandatory: {}", l.text(lang)),
            InvalidReference(l) if nl => format!("Ongeldige referentie: {}", l.text(lang)),
            InvalidReference(l) => format!("Invalid reference: {}", l.text(lang)),
            InvalidValue(l) if nl => format!("Ongeldige waarde: {}", l.text(lang)),
            InvalidValue(l) => format!("Invalid value: {}", l.text(lang)),
            Blocked(l) if nl => format!("Geblokkeerd: {}", l.text(lang)),
            Blocked(l) => format!("Blocked: {}", l.text(lang)),
            InvalidType(l) if nl => format!("Ongeldig: {} (Type)", l.text(lang)),
            InvalidType(l) => format!("Invalid: {} (Type)", l.text(lang)),
            Duplicate(l) if nl => format!("Bestaat al: {}", l.text(lang)),
            Duplicate(l) => format!("Already exists: {}", l.text(lang)),
            NotSalesJournal if nl => "Ongeldig dagboek. Het dagboek moet een verkoopboek zijn.".into(),
            NotSalesJournal => "Invalid journal. The journal must be a sales journal.".into(),
            ItemNotSalesItem(c) if nl => format!("Artikel is geen verkoopartikel: {c}"),
            ItemNotSalesItem(c) => format!("Item is not a sales item: {c}"),
            ItemEnded(c) if nl => format!("Artikel is niet meer geldig: {c}"),
            ItemEnded(c) => format!("Item is no longer valid: {c}"),
            VatNotForSales(c) if nl => format!("Btw-code is niet toegestaan voor verkoop: {c}"),
            VatNotForSales(c) => format!("VAT code is not allowed for sales: {c}"),
            AlreadyProcessed if nl => {
                "De factuur is al verwerkt en kan niet meer gewijzigd worden.".into()
            }
            AlreadyProcessed => {
                "The invoice has already been processed and can no longer be changed.".into()
            }
            ContactNameRequired if nl => {
                "Geef ten minste voornaam of achternaam op om een nieuwe contactpersoon aan te maken"
                    .into()
            }
            ContactNameRequired => {
                "Provide at least first name or last name to create a new contact".into()
            }
            EmailSent(to) if nl => format!("E-mail is verzonden naar {to}"),
            EmailSent(to) => format!("E-mail has been sent to {to}"),
            NoEmailAddress if nl => {
                "E-mail kan niet worden verzonden: geen e-mailadres bij de klant".into()
            }
            NoEmailAddress => "E-mail could not be sent: the customer has no e-mail address".into(),
            DocumentCreated if nl => "Document is aangemaakt".into(),
            DocumentCreated => "Document has been created".into(),
        }
    }
}

/// Several messages joined the way Exact joins them.
pub(crate) fn join(lang: Lang, msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| m.text(lang))
        .collect::<Vec<_>>()
        .join("\r\n")
}

//! Payments "booked as bank entries": they match (part of) an invoice's receivable and raise `BankEntries` webhooks.

use uuid::Uuid;

use crate::Inner;
use crate::api::round2;
use crate::world::{BankEntry, Receivable};

const STATUS_OPEN: i32 = 20;
const STATUS_MATCHED: i32 = 50;

fn parse_id(invoice_id: &str) -> Result<Uuid, String> {
    Uuid::parse_str(
        invoice_id
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}'),
    )
    .map_err(|_| format!("not an invoice ID: {invoice_id}"))
}

fn bank_entry_endpoint(inner: &Inner, division: u32, id: Uuid) -> String {
    format!(
        "{}/api/v1/{division}/financialtransaction/BankEntries(guid'{id}')",
        inner.base_url
    )
}

pub(crate) fn pay_invoice(
    inner: &Inner,
    division: u32,
    invoice_id: &str,
    amount: f64,
) -> Result<(), String> {
    let invoice_id = parse_id(invoice_id)?;
    if !amount.is_finite() || amount <= 0.0 {
        return Err(format!("the amount must be positive, got {amount}"));
    }
    let amount = round2(amount);
    let now = inner.clock.now_ms();
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&division)
        .ok_or_else(|| format!("no division {division}"))?;
    if !d.sales_invoices.iter().any(|i| i.invoice_id == invoice_id) {
        return Err(format!("no invoice {invoice_id} in division {division}"));
    }
    let open: Vec<usize> = d
        .receivables
        .iter()
        .enumerate()
        .filter(|(_, r)| r.transaction_entry_id == invoice_id && !r.is_fully_paid)
        .map(|(i, _)| i)
        .collect();
    if !d
        .receivables
        .iter()
        .any(|r| r.transaction_entry_id == invoice_id)
    {
        return Err(format!(
            "invoice {invoice_id} is not processed: it has no receivable"
        ));
    }
    let open_total = round2(open.iter().map(|&i| d.receivables[i].amount_dc).sum());
    if open.is_empty() {
        return Err(format!("invoice {invoice_id} is already fully paid"));
    }
    if amount > open_total + 0.005 {
        return Err(format!("{amount} exceeds the open amount {open_total}"));
    }
    match_rows(&mut d.receivables, &open, amount, now);
    for r in d
        .receivables
        .iter_mut()
        .filter(|r| r.transaction_entry_id == invoice_id)
    {
        r.last_payment_date_ms = Some(now);
    }
    let entry = BankEntry {
        id: crate::world::new_id(),
        invoice_id,
        amount,
        date_ms: now,
        reversed: false,
    };
    let entry_id = entry.id;
    d.bank_entries.push(entry);
    let endpoint = bank_entry_endpoint(inner, division, entry_id);
    crate::webhooks::queue_event(
        &mut world,
        division,
        "BankEntries",
        entry_id,
        endpoint,
        inner.clock.now(),
    );
    Ok(())
}

pub(crate) fn reverse_payments(
    inner: &Inner,
    division: u32,
    invoice_id: &str,
) -> Result<(), String> {
    let invoice_id = parse_id(invoice_id)?;
    let now = inner.clock.now_ms();
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&division)
        .ok_or_else(|| format!("no division {division}"))?;
    let paid: f64 = d
        .bank_entries
        .iter()
        .filter(|b| b.invoice_id == invoice_id && !b.reversed)
        .map(|b| b.amount)
        .sum();
    if paid <= 0.0 {
        return Err(format!("invoice {invoice_id} has no payments to reverse"));
    }
    for b in d
        .bank_entries
        .iter_mut()
        .filter(|b| b.invoice_id == invoice_id)
    {
        b.reversed = true;
    }
    let rows: Vec<Receivable> = d
        .receivables
        .iter()
        .filter(|r| r.transaction_entry_id == invoice_id)
        .cloned()
        .collect();
    let Some(first) = rows.first() else {
        return Err(format!("invoice {invoice_id} has no receivable"));
    };
    let merged = Receivable {
        amount_dc: round2(rows.iter().map(|r| r.amount_dc).sum()),
        is_fully_paid: false,
        status: STATUS_OPEN,
        last_payment_date_ms: None,
        end_date_ms: None,
        ..first.clone()
    };
    d.receivables
        .retain(|r| r.transaction_entry_id != invoice_id);
    d.receivables.push(merged);
    let reversal = BankEntry {
        id: crate::world::new_id(),
        invoice_id,
        amount: -round2(paid),
        date_ms: now,
        reversed: true,
    };
    let entry_id = reversal.id;
    d.bank_entries.push(reversal);
    let endpoint = bank_entry_endpoint(inner, division, entry_id);
    crate::webhooks::queue_event(
        &mut world,
        division,
        "BankEntries",
        entry_id,
        endpoint,
        inner.clock.now(),
    );
    Ok(())
}

pub(crate) fn settle_with_credit_note(
    inner: &Inner,
    division: u32,
    invoice_id: &str,
    credit_note_id: &str,
) -> Result<(), String> {
    let invoice_id = parse_id(invoice_id)?;
    let credit_id = parse_id(credit_note_id)?;
    let now = inner.clock.now_ms();
    let mut world = inner.world();
    let d = world
        .divisions
        .get_mut(&division)
        .ok_or_else(|| format!("no division {division}"))?;
    let note = d
        .sales_invoices
        .iter()
        .find(|i| i.invoice_id == credit_id)
        .ok_or_else(|| format!("no credit note {credit_id} in division {division}"))?;
    if note.invoice_type != 8021 {
        return Err(format!("{credit_id} is not a credit note (Type 8021)"));
    }
    let open_rows = |d: &crate::world::Division, id: Uuid| -> Vec<usize> {
        d.receivables
            .iter()
            .enumerate()
            .filter(|(_, r)| r.transaction_entry_id == id && !r.is_fully_paid)
            .map(|(i, _)| i)
            .collect()
    };
    let credit_rows = open_rows(d, credit_id);
    let invoice_rows = open_rows(d, invoice_id);
    if credit_rows.is_empty() {
        return Err(format!("credit note {credit_id} has no open receivable"));
    }
    if invoice_rows.is_empty() {
        return Err(format!("invoice {invoice_id} has no open receivable"));
    }
    let same_account = |rows: &[usize]| d.receivables[rows[0]].account;
    if same_account(&credit_rows) != same_account(&invoice_rows) {
        return Err("the credit note and the invoice belong to different accounts".into());
    }
    let credit = round2(
        -credit_rows
            .iter()
            .map(|&i| d.receivables[i].amount_dc)
            .sum::<f64>(),
    );
    let open_total = round2(
        invoice_rows
            .iter()
            .map(|&i| d.receivables[i].amount_dc)
            .sum(),
    );
    if credit <= 0.0 || credit > open_total + 0.005 {
        return Err(format!(
            "the credit note's {credit} must be positive and at most the invoice's open {open_total}"
        ));
    }
    for &i in &credit_rows {
        let r = &mut d.receivables[i];
        r.is_fully_paid = true;
        r.status = STATUS_MATCHED;
        r.end_date_ms = Some(now);
    }
    match_rows(&mut d.receivables, &invoice_rows, credit, now);
    Ok(())
}

/// Matches `amount` against the open receivable rows `rows` in order: whole rows become matched (fully paid, Status
/// 50); a row only partly covered is split, its matched part becoming a row of its own while the rest stays open.
/// A payment then stamps `LastPaymentDate` on the invoice's rows; a credit note does not.
fn match_rows(receivables: &mut Vec<Receivable>, rows: &[usize], amount: f64, now: i64) {
    let mut remaining = amount;
    let mut split: Option<Receivable> = None;
    for &i in rows {
        if remaining <= 0.005 {
            break;
        }
        let r = &mut receivables[i];
        if remaining + 0.005 >= r.amount_dc {
            remaining = round2(remaining - r.amount_dc);
            r.is_fully_paid = true;
            r.status = STATUS_MATCHED;
            r.end_date_ms = Some(now);
        } else {
            let mut matched = r.clone();
            matched.id = crate::world::new_id();
            matched.amount_dc = remaining;
            matched.is_fully_paid = true;
            matched.status = STATUS_MATCHED;
            matched.end_date_ms = Some(now);
            r.amount_dc = round2(r.amount_dc - remaining);
            remaining = 0.0;
            split = Some(matched);
        }
    }
    receivables.extend(split);
}

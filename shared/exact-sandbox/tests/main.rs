//! The sandbox's behaviour over HTTP, as Exact's (one test binary).

mod beliefs;
mod common;
mod crm;
mod faults;
mod invoices;
mod oauth;
mod odata;
mod payments;
mod rate_limits;
mod webhooks;

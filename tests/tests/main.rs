//! End-to-end tests across the four functions (one test binary: one link, one moto server).

mod admin;
mod administrations;
mod app_secret;
mod attachments;
mod budget;
mod callbacks;
mod connect;
mod events;
mod exact_dates;
mod metrics;
mod openapi;
mod paid;
mod push;
mod queued_push;
mod request_id;
mod test_connection;
mod tokens_day;

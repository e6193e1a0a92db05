//! Captures every log line of the run (tracing events and `log` records, DEBUG and up, as JSON lines) into memory,
//! so the run can be scanned for the tokens and secrets it used.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use crate::table::Table;

/// The captured output, shared with the subscriber, and a count of the events the subscriber saw (kept apart from
/// the text, so the scan can prove it read everything the run logged).
#[derive(Clone, Default)]
pub struct Captured {
    text: Arc<Mutex<Vec<u8>>>,
    events: Arc<AtomicUsize>,
    installed: Arc<AtomicBool>,
}

/// Counts every event that passes the subscriber's level filter: one captured line is expected per event.
struct EventCounter(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventCounter {
    fn on_event(
        &self,
        _event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// One writer per event.
pub struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = CapturedWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CapturedWriter(self.text.clone())
    }
}

/// What the scan found.
#[derive(Debug, Default, Clone)]
pub struct ScanResult {
    /// Lines scanned.
    pub lines: usize,
    /// Lines written by the connector (everything except the Exact sandbox, a test peer).
    pub product_lines: usize,
    /// Product lines containing a secret, with the kind of secret found.
    pub product_hits: Vec<(String, String)>,
    /// Sandbox lines containing a secret (the emulator's own logs; informational).
    pub sandbox_hits: usize,
    /// How many distinct secret values were searched for.
    pub secrets: usize,
    /// Events the subscriber counted while the run logged (one line each is expected in the capture).
    pub events: usize,
    /// Whether the capture was installed as the process's subscriber (otherwise it saw nothing).
    pub installed: bool,
}

/// The row that proves the scan read the run's logs: the capture was installed, saw lines, and holds at least one
/// line per event the subscriber counted. A failed install would otherwise scan 0 lines and find 0 secrets.
pub fn capture_row(table: &mut Table, scan: &ScanResult) {
    let missing = if !scan.installed || scan.lines == 0 {
        scan.events.max(1)
    } else {
        scan.events.saturating_sub(scan.lines)
    };
    table.exact(
        "Log events of the run missing from the scanned capture",
        missing,
        0,
        &format!(
            "{} events counted, {} lines captured{}",
            scan.events,
            scan.lines,
            if scan.installed {
                ""
            } else {
                "; the capture was not installed"
            }
        ),
    );
}

impl Captured {
    /// Installs the capture as the global subscriber (DEBUG for every target), bridging `log` records too.
    pub fn install() -> Captured {
        use tracing_subscriber::util::SubscriberInitExt;
        let cap = Captured::default();
        let subscriber = cap.subscriber();
        // `try_init` also installs the `log` → tracing bridge; failure means a subscriber is already set, and the
        // scan's capture row then fails.
        let installed = subscriber.try_init().is_ok();
        cap.installed.store(installed, Ordering::Relaxed);
        cap
    }

    /// The subscriber writing JSON lines into this capture and counting events (DEBUG and up).
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(self.clone()),
            )
            .with(EventCounter(self.events.clone()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Scans every line for every secret (kind, value). Values shorter than 8 characters are skipped (they would
    /// match ordinary text).
    pub fn scan(&self, secrets: &Secrets) -> ScanResult {
        // Events first: the line of an event is written before it is counted, so every counted event's line is in
        // the text read next, even while background tasks still log.
        let events = self.events.load(Ordering::Relaxed);
        let text = self.text();
        let mut r = ScanResult {
            secrets: secrets.values.len(),
            events,
            installed: self.installed.load(Ordering::Relaxed),
            ..ScanResult::default()
        };
        for line in text.lines() {
            r.lines += 1;
            let sandbox = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["target"].as_str().map(|t| t.starts_with("exact_sandbox")))
                .unwrap_or(false);
            if !sandbox {
                r.product_lines += 1;
            }
            for (kind, value) in &secrets.values {
                if line.contains(value.as_str()) {
                    if sandbox {
                        r.sandbox_hits += 1;
                    } else {
                        let excerpt: String = line.chars().take(300).collect();
                        r.product_hits.push((kind.clone(), excerpt));
                    }
                }
            }
        }
        r
    }
}

/// The secret values a run used: tokens Exact issued, the app's secrets.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    pub values: BTreeSet<(String, String)>,
}

impl Secrets {
    pub fn add(&mut self, kind: &str, value: &str) {
        if value.len() >= 8 {
            self.values.insert((kind.to_owned(), value.to_owned()));
        }
    }

    /// Every token and code the sandbox issued and the app secret of the harness.
    pub fn collect(&mut self, h: &e2e::Harness) {
        use secrecy::ExposeSecret;
        {
            let w = h.sandbox.world();
            for t in w.tokens.access_tokens.keys() {
                self.add("access_token", t);
            }
            for t in w.tokens.refresh_tokens.keys() {
                self.add("refresh_token", t);
            }
            for c in w.tokens.codes.keys() {
                self.add("authorization_code", c);
            }
        }
        let s = &h.app.secret;
        self.add("exact_client_secret", s.exact_client_secret.expose_secret());
        self.add(
            "exact_webhook_secret",
            s.exact_webhook_secret.expose_secret(),
        );
        self.add("psa_api_key", s.psa_api_key.expose_secret());
        self.add("psa_callback_secret", s.psa_callback_secret.expose_secret());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_a_secret_in_a_product_line_only() {
        let cap = Captured::default();
        cap.installed.store(true, Ordering::Relaxed);
        tracing::subscriber::with_default(cap.subscriber(), || {
            tracing::info!(token = "tok-0123456789abcdef", "leaked");
            tracing::info!("harmless line");
        });
        let mut secrets = Secrets::default();
        secrets.add("access_token", "tok-0123456789abcdef");
        secrets.add("short", "abc");
        let r = cap.scan(&secrets);
        assert_eq!(r.lines, 2);
        assert_eq!(r.secrets, 1, "values under 8 characters are not searched");
        assert_eq!(r.product_hits.len(), 1);
        assert_eq!(r.product_hits[0].0, "access_token");
        assert_eq!(r.events, 2);
        let mut t = Table::new("t");
        capture_row(&mut t, &r);
        assert!(t.failures().is_empty(), "{}", t.render());
    }

    #[test]
    fn an_empty_or_partial_capture_fails_the_row() {
        // Never installed: nothing captured, nothing counted.
        let cap = Captured::default();
        let r = cap.scan(&Secrets::default());
        assert_eq!(r.lines, 0);
        let mut t = Table::new("t");
        capture_row(&mut t, &r);
        assert_eq!(t.failures().len(), 1, "{}", t.render());
        // Events counted but lines lost (a writer that dropped output).
        let partial = ScanResult {
            lines: 3,
            events: 5,
            installed: true,
            ..ScanResult::default()
        };
        let mut t = Table::new("t");
        capture_row(&mut t, &partial);
        assert_eq!(t.failures().len(), 1, "{}", t.render());
    }
}

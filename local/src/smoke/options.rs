//! `cargo run -- smoke [flags]`: the options, from flags or the environment (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mapping::Country;
use secrecy::SecretString;
use url::Url;

pub const USAGE: &str = "\
cargo run -- smoke [--write] [--record DIR] [flags]

Signs in at Exact with a real app (prints the authorize URL, listens on localhost for the redirect), then checks
what the connector believes about Exact against the administration you had open, and prints one line per fact.

  --client-id ID         or EXACT_CLIENT_ID        the app's client ID (App Center)
  --client-secret S      or EXACT_CLIENT_SECRET    the app's client secret (prefer the environment)
  --redirect-uri URL     or EXACT_REDIRECT_URI     the app's registered redirect URI, e.g. http://localhost:8976/callback
  --country CC           or EXACT_COUNTRY          nl (default), be, de, uk, us, es, fr
  --base-url URL         or EXACT_BASE_URL         one Exact host for every country (the sandbox)
  --listen ADDR          where to listen (loopback); default: the redirect URI's port on 127.0.0.1
  --division N           the administration to check (default: the one open in Exact)
  --item CODE            an existing item code (default CONSULT)
  --vat-code CODE        an existing sales VAT code (default 2)
  --journal CODE         a sales journal numbering at processing (default 70)
  --entry-journal CODE   a sales journal numbering at entry (optional)
  --write                also create a test customer and zero-amount invoices, processed without e-mail
  --webhook-url URL      with --write: subscribe the connector's topics there, then remove them again
  --webhook-secret S     or EXACT_WEBHOOK_SECRET   verifies deliveries to this listener (--watch)
  --watch SECONDS        with --webhook-url routed to this listener: wait (at most 480 s) for a payment you
                         match by hand
  --record DIR           save every request/response pair, redacted, as JSON fixtures
";

/// The longest watch for a matched payment: the subscriptions are removed afterwards with the same access token.
pub const MAX_WATCH: Duration = Duration::from_secs(480);

#[derive(Debug)]
pub struct Options {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: Url,
    pub country: Country,
    pub base_url: Option<Url>,
    pub listen: SocketAddr,
    pub division: Option<u32>,
    pub item: String,
    pub vat_code: String,
    pub journal: String,
    pub entry_journal: Option<String>,
    pub write: bool,
    pub webhook_url: Option<Url>,
    pub webhook_secret: Option<SecretString>,
    pub watch: Duration,
    pub record: Option<PathBuf>,
    /// How long to wait for the sign-in.
    pub sign_in_timeout: Duration,
}

fn url(name: &str, v: &str) -> Result<Url, String> {
    Url::parse(v).map_err(|e| format!("{name}: not a URL: {e}"))
}

/// The loopback address to listen on for `redirect`, when it points at this machine.
fn listen_for(redirect: &Url) -> Option<SocketAddr> {
    let loopback = match redirect.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (loopback && redirect.scheme() == "http")
        .then(|| SocketAddr::from(([127, 0, 0, 1], redirect.port().unwrap_or(80))))
}

impl Options {
    /// From `args` (after `smoke`) and `env` (a variable's value by name).
    pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut flags: Vec<(String, Option<String>)> = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument `{a}`\n\n{USAGE}"));
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (name.to_owned(), None),
            };
            match name.as_str() {
                "write" | "help" => flags.push((name, None)),
                "client-id" | "client-secret" | "redirect-uri" | "country" | "base-url"
                | "listen" | "division" | "item" | "vat-code" | "journal" | "entry-journal"
                | "webhook-url" | "webhook-secret" | "watch" | "record" => {
                    let v = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .cloned()
                            .ok_or_else(|| format!("--{name} needs a value"))?,
                    };
                    flags.push((name, Some(v)));
                }
                _ => return Err(format!("unknown flag --{name}\n\n{USAGE}")),
            }
        }
        if flags.iter().any(|(n, _)| n == "help") {
            return Err(USAGE.to_owned());
        }
        let flag = |n: &str| {
            flags
                .iter()
                .rev()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.clone())
        };
        let either = |n: &str, var: &str| flag(n).or_else(|| env(var)).filter(|v| !v.is_empty());
        let need = |n: &str, var: &str| {
            either(n, var).ok_or_else(|| format!("--{n} (or {var}) is required\n\n{USAGE}"))
        };
        let redirect_uri = url(
            "--redirect-uri",
            &need("redirect-uri", "EXACT_REDIRECT_URI")?,
        )?;
        let listen = match flag("listen") {
            Some(a) => a
                .parse::<SocketAddr>()
                .map_err(|_| format!("--listen: not an address: {a}"))?,
            None => listen_for(&redirect_uri).ok_or(
                "the redirect URI is not http://localhost:PORT/…: give --listen 127.0.0.1:PORT where it arrives \
                 (e.g. behind a tunnel)",
            )?,
        };
        if !listen.ip().is_loopback() {
            return Err(format!("--listen must be a loopback address, not {listen}"));
        }
        let country: Country = either("country", "EXACT_COUNTRY")
            .unwrap_or_else(|| "nl".into())
            .parse()
            .map_err(|_| "--country: one of nl, be, de, uk, us, es, fr".to_owned())?;
        let base_url = either("base-url", "EXACT_BASE_URL")
            .map(|v| url("--base-url", &v))
            .transpose()?;
        let division = flag("division")
            .map(|d| {
                d.parse::<u32>()
                    .map_err(|_| format!("--division: not a number: {d}"))
            })
            .transpose()?;
        let watch = flag("watch")
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| format!("--watch: seconds, not {s}"))
            })
            .transpose()?
            .map_or(Duration::ZERO, Duration::from_secs);
        let write = flags.iter().any(|(n, _)| n == "write");
        let webhook_url = flag("webhook-url")
            .map(|v| url("--webhook-url", &v))
            .transpose()?;
        if webhook_url.is_some() && !write {
            return Err("--webhook-url subscribes topics: it needs --write".into());
        }
        if watch > MAX_WATCH {
            return Err(format!(
                "--watch: at most {} s (the access token lives 600 s and the subscriptions are removed after)",
                MAX_WATCH.as_secs()
            ));
        }
        if !watch.is_zero() && webhook_url.is_none() {
            return Err("--watch needs --webhook-url (routed to this listener)".into());
        }
        Ok(Options {
            client_id: need("client-id", "EXACT_CLIENT_ID")?,
            client_secret: SecretString::from(need("client-secret", "EXACT_CLIENT_SECRET")?),
            redirect_uri,
            country,
            base_url,
            listen,
            division,
            item: flag("item").unwrap_or_else(|| "CONSULT".into()),
            vat_code: flag("vat-code").unwrap_or_else(|| mapping::DEFAULT_TAX_CODE.into()),
            journal: flag("journal").unwrap_or_else(|| "70".into()),
            entry_journal: flag("entry-journal"),
            write,
            webhook_url,
            webhook_secret: either("webhook-secret", "EXACT_WEBHOOK_SECRET")
                .map(SecretString::from),
            watch,
            record: flag("record").map(PathBuf::from),
            sign_in_timeout: Duration::from_secs(600),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn env(var: &str) -> Option<String> {
        match var {
            "EXACT_CLIENT_ID" => Some("env-id".into()),
            "EXACT_CLIENT_SECRET" => Some("env-secret".into()),
            "EXACT_REDIRECT_URI" => Some("http://localhost:8976/callback".into()),
            _ => None,
        }
    }

    #[test]
    fn environment_then_flags() {
        let o = Options::parse(&[], env).unwrap();
        assert_eq!(o.client_id, "env-id");
        assert_eq!(o.client_secret.expose_secret(), "env-secret");
        assert_eq!(o.listen, "127.0.0.1:8976".parse().unwrap());
        assert_eq!(
            (o.country, o.write, o.watch),
            (Country::Nl, false, Duration::ZERO)
        );
        assert_eq!(
            (o.item.as_str(), o.vat_code.as_str(), o.journal.as_str()),
            ("CONSULT", "2", "70")
        );
        let o = Options::parse(
            &args("--client-id flag-id --country=be --write --entry-journal 72 --webhook-url https://t.example/w --watch 90 --record out"),
            env,
        )
        .unwrap();
        assert_eq!(o.client_id, "flag-id");
        assert_eq!(o.country, Country::Be);
        assert_eq!(o.entry_journal.as_deref(), Some("72"));
        assert_eq!(o.watch, Duration::from_secs(90));
        assert_eq!(o.record, Some(PathBuf::from("out")));
        assert!(
            !format!("{o:?}").contains("env-secret"),
            "Debug hides the secret"
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let none = |_: &str| None;
        assert!(
            Options::parse(&[], none)
                .unwrap_err()
                .contains("--redirect-uri")
        );
        assert!(
            Options::parse(&args("--bogus"), env)
                .unwrap_err()
                .contains("unknown flag --bogus")
        );
        assert!(
            Options::parse(&args("--webhook-url https://x.example/w"), env)
                .unwrap_err()
                .contains("needs --write")
        );
        assert!(
            Options::parse(&args("--listen 0.0.0.0:80"), env)
                .unwrap_err()
                .contains("loopback")
        );
        assert!(
            Options::parse(&args("--redirect-uri https://psa.example/cb"), env)
                .unwrap_err()
                .contains("--listen")
        );
        let o = Options::parse(
            &args("--redirect-uri https://psa.example/cb --listen 127.0.0.1:9000"),
            env,
        )
        .unwrap();
        assert_eq!(o.listen.port(), 9000);
        assert!(
            Options::parse(&args("--help"), env)
                .unwrap_err()
                .contains("--record DIR")
        );
    }
}

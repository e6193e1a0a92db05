//! Tokens over a day: a connection refreshing every 610 s for 24 h of driven clock on moto (Secrets Manager's
//! version quota: no secret may receive more than 100 versions a day), and token-endpoint refusals that are not
//! the user's fault (wrong app credentials, 429, 5xx), which must leave every connection connected.

use std::time::Duration;

use exact_sandbox::{Fault, FaultKind};
use secrecy::SecretString;

use crate::logs::Secrets;
use crate::table::Table;
use crate::world::{World, WorldOptions};

const JAN: &str = "jan@jansen.example";
const CADENCE: Duration = Duration::from_secs(610);

/// Both rows.
pub async fn run(table: &mut Table, secrets: &mut Secrets) {
    day_of_refreshes(table, secrets).await;
    refusals_not_the_users_fault(table, secrets).await;
}

/// 24 h at one refresh per 610 s on one connection (moto): the most versions any of its token secrets holds.
pub async fn day_of_refreshes(table: &mut Table, secrets: &mut Secrets) {
    let case = "24 h of driven clock, a token refresh every 610 s (moto) → max versions in one token secret";
    let w = World::start(WorldOptions {
        moto: true,
        ..WorldOptions::default()
    })
    .await;
    w.connect("bu_day", JAN, 1001).await;
    let Ok(conn) = mapping::ConnectionId::parse("bu_day") else {
        return;
    };
    let clock = w.h.sandbox.clock();
    clock.freeze();
    let cycles = (24 * 3600 / CADENCE.as_secs()) as usize + 1;
    let mut broken = Vec::new();
    for i in 0..cycles {
        clock.advance(CADENCE);
        match connector::tokens::session(&w.h.app, &conn).await {
            Ok(s) => {
                if let Err(e) = s.exact.division_info(s.exact.division()).await {
                    broken.push(format!("cycle {i}: {e}"));
                }
            }
            Err(e) => broken.push(format!("cycle {i}: {}", e.code)),
        }
    }
    clock.unfreeze();
    let prefix = w.h.aws.as_ref().map(|a| a.2.clone()).unwrap_or_default();
    let counts = (
        w.h.secret_versions(&format!("{prefix}bu_day")).await,
        w.h.secret_versions(&format!("{prefix}bu_day.1")).await,
    );
    match counts {
        (Ok(a), Ok(b)) => {
            let max = a.max(b);
            let detail = format!(
                "{cycles} refreshes: slot 0 {a}, slot 1 {b} versions; {} failed",
                broken.len()
            );
            let verdict = if max <= 100 && broken.is_empty() {
                crate::table::Verdict::Pass
            } else {
                crate::table::Verdict::Fail(format!("{max} versions, {} failed", broken.len()))
            };
            table.row(
                case,
                format!("{max} ({detail})"),
                "≤ 100, 0 failed",
                verdict,
            );
        }
        (Err(e), _) | (_, Err(e)) => table.not_measured(case, "≤ 100", &e),
    }
    secrets.collect(&w.h);
}

/// Token-endpoint refusals that are the app's or Exact's problem: connections marked needs_reconnect.
pub async fn refusals_not_the_users_fault(table: &mut Table, secrets: &mut Secrets) {
    let w = World::start(WorldOptions::default()).await;
    let kinds = ["invalid_client", "429", "500", "503"];
    let mut marked = 0;
    let mut answers = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let id = format!("bu_ref{i}");
        w.connect(&id, JAN, 1001).await;
        let Ok(conn) = mapping::ConnectionId::parse(&id) else {
            continue;
        };
        w.h.sandbox.clock().advance(CADENCE);
        let mut app = (*w.h.app).clone();
        match *kind {
            "invalid_client" => {
                // The app secret holds a wrong client secret: Exact answers a bare invalid_request.
                let mut secret = e2e::app_secret(&w.h.sandbox);
                secret.exact_client_secret = SecretString::from("not-the-client-secret");
                app.secret = std::sync::Arc::new(secret);
            }
            "429" => {
                w.h.sandbox
                    .inject(Fault::new("/api/oauth2/token", FaultKind::RateLimit))
            }
            s => w.h.sandbox.inject(Fault::status(
                "/api/oauth2/token",
                s.parse().unwrap_or(500),
                "token service failure",
            )),
        }
        let code = match connector::tokens::session(&app, &conn).await {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{} {}", e.status, e.code),
        };
        w.h.sandbox.clear_faults();
        answers.push(format!("{kind} → {code}"));
        let (_, status) = w.h.get(&format!("/connections/{id}/exact")).await;
        if status["state"] != "connected" {
            marked += 1;
        }
    }
    table.exact(
        "Token-endpoint refusals invalid_client / 429 / 500 / 503 → connections marked needs_reconnect",
        marked,
        0,
        &answers.join(", "),
    );
    secrets.collect(&w.h);
}

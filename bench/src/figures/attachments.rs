//! A push carrying a 1 MB specification (one PDF made by `testkit::pdf`): the Exact calls it costs against a plain
//! push of the same customer, and the handler's wall time for each (the handler called in-process with the
//! in-memory store, the sandbox on the same runtime: Exact's work is included, AWS is not). `BENCH_ONLY=attachments`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::hostile::{call_handler, unlimited_world};
use crate::table::{Table, Verdict};
use crate::world::{Company, invoice};

const JAN: &str = "jan@jansen.example";
const CONN: &str = "bu_att";
const DIV: u32 = 1001;
/// Pushes of each kind measured.
const N: usize = 5;
const SIZE: usize = 1_000_000;

pub async fn run(table: &mut Table) {
    let case = "Push with a 1 MB specification (1 PDF), warm customer";
    let (w, configured) = unlimited_world(JAN, DIV, CONN, "bu_att_t").await;
    if let Err(e) = configured {
        table.not_measured(case, "—", &e);
        return;
    }
    let company = Company::new("att");
    let pdf = testkit::pdf::pdf_of_size(&["Specification: time & material"], SIZE);
    let file = json!([{"file_name": "specification.pdf", "content_type": "application/pdf",
                       "content_base64": testkit::pdf::base64(&pdf)}]);
    let path = format!("/connections/{CONN}/invoices");
    // One push of `tag`, with or without the file: (status, Exact calls, handler wall time).
    let push = |tag: String, with_file: bool| {
        let app = w.h.app.clone();
        let mut body = invoice(&tag, &company);
        if with_file {
            body["attachments"] = file.clone();
        }
        let path = path.clone();
        let sandbox = w.h.sandbox.clone();
        async move {
            let before = sandbox.api_calls(DIV);
            let t = Instant::now();
            let (status, _) = call_handler(
                &connector::routes::PushInvoice,
                &app,
                "POST",
                &path,
                Some(&body),
            )
            .await;
            (status, sandbox.api_calls(DIV) - before, t.elapsed())
        }
    };
    // Warm up: the customer's IDs cached, connections open.
    for i in 0..3 {
        if push(format!("att_warm_{i}"), false).await.0 != 201 {
            table.not_measured(case, "—", "the warm-up push failed");
            return;
        }
    }
    let mut kinds = Vec::new();
    for with_file in [false, true] {
        let mut calls = Vec::new();
        let mut times = Vec::new();
        for i in 0..N {
            let (status, c, t) = push(format!("att_{with_file}_{i}"), with_file).await;
            if status != 201 {
                table.not_measured(case, "—", &format!("a push answered {status}"));
                return;
            }
            calls.push(c);
            times.push(t);
        }
        times.sort();
        kinds.push((calls, times[N / 2]));
    }
    let (plain_calls, plain_time) = (&kinds[0].0, kinds[0].1);
    let (spec_calls, spec_time) = (&kinds[1].0, kinds[1].1);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let want = plain_calls[0] + 2;
    let verdict = if spec_calls.iter().all(|c| *c == want)
        && plain_calls.iter().all(|c| *c == plain_calls[0])
    {
        Verdict::Pass
    } else {
        Verdict::Missed(format!("calls {spec_calls:?}, expected {want} each"))
    };
    table.row(
        case,
        format!(
            "{} Exact calls (plain push {}: + document + attachment); handler wall time median {:.1} ms (plain {:.1} ms), N = {N} each",
            spec_calls[0],
            plain_calls[0],
            ms(spec_time),
            ms(plain_time)
        ),
        "calls = plain + 2",
        verdict,
    );
}

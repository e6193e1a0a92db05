//! `docs/openapi.json` describes what the handlers really do: the same routes as the template, each routed to a
//! function, and every documented example answered with a documented status and the documented required fields.

use std::collections::BTreeSet;

use e2e::Harness;
use serde_json::Value;

fn root(rel: &str) -> String {
    let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn doc() -> Value {
    serde_json::from_str(&root("docs/openapi.json")).unwrap()
}

/// `(METHOD, /path/{param})` of every operation.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// The HttpApi events of template.yaml: `Method: X, Path: "/…"`.
fn template_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in root("template.yaml").lines() {
        let (Some(m), Some(p)) = (line.find("Method: "), line.find("Path: ")) else {
            continue;
        };
        let method: String = line[m + 8..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let rest = &line[p + 6..];
        let path: String = match rest.strip_prefix('"') {
            Some(quoted) => quoted.chars().take_while(|c| *c != '"').collect(),
            None => rest
                .chars()
                .take_while(|c| !matches!(c, ' ' | '}' | ','))
                .collect(),
        };
        out.insert((method, path));
    }
    out
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(ptr).unwrap_or_else(|| panic!("dangling {r}")),
            )
        }
        None => v,
    }
}

#[test]
fn documents_exactly_the_templates_routes_and_each_has_a_function() {
    let doc = doc();
    assert_eq!(documented(&doc), template_routes());
    for (method, path) in documented(&doc) {
        let concrete = path
            .replace("{connection_id}", "bu_1")
            .replace("{invoice_id}", "inv_1");
        let m = lambda_http::http::Method::from_bytes(method.as_bytes()).unwrap();
        assert!(
            psa_exact_local::function_for(&m, &concrete).is_some(),
            "{method} {path} has no function"
        );
    }
}

#[tokio::test]
async fn every_example_is_answered_as_documented() {
    let doc = doc();
    let h = Harness::memory().await;
    h.sandbox
        .world()
        .users
        .iter_mut()
        .find(|u| u.login == "jan@jansen.example")
        .unwrap()
        .current_division = 1001;
    h.connect("bu_1", "jan@jansen.example", "nl").await;
    let order = [
        ("post", "/connections/{connection_id}/exact/authorize"),
        ("get", "/connections/{connection_id}/exact"),
        ("post", "/connections/{connection_id}/exact/test"),
        ("post", "/connections/{connection_id}/invoices"),
        ("get", "/connections/{connection_id}/invoices/{invoice_id}"),
        ("post", "/exact/webhooks"),
        ("delete", "/connections/{connection_id}/exact"),
    ];
    for (method, path) in order {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} documented");
        let example = op.pointer("/requestBody/content/application~1json/example");
        let concrete = path
            .replace("{connection_id}", "bu_1")
            .replace("{invoice_id}", "inv_8f2c");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, _, body) = h.call(m, &concrete, example).await;
        let responses = op["responses"].as_object().unwrap();
        let documented = responses
            .get(&status.to_string())
            .unwrap_or_else(|| panic!("{method} {path} answered {status}, not documented: {body}"));
        let schema = resolve(&doc, documented);
        let schema = schema
            .pointer("/content/application~1json/schema")
            .map(|s| resolve(&doc, s));
        if let Some(required) = schema.and_then(|s| s["required"].as_array()) {
            for field in required {
                let f = field.as_str().unwrap();
                assert!(
                    body.get(f).is_some(),
                    "{method} {path} {status}: `{f}` missing in {body}"
                );
            }
        }
        assert!(status < 500, "{method} {path}: {status} {body}");
    }
}

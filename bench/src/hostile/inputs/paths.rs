//! Odd connection and invoice ids in the path, unknown connections, wrong keys and wrong methods, on every route.

use super::*;

pub(super) fn cases(ids: &mut Ids) -> Vec<Case> {
    let g = Group::PathsAndKeys;
    let authorize = || base_authorize("https://psa.example/");
    let mut out = Vec::new();
    // (connection id, whether the refusal must name `connection_id`)
    let long = "a".repeat(65);
    let connection_ids = [
        ("bad%20id", true),
        (long.as_str(), true),
        ("%C3%BC", true),
        ("..", false),
        ("%2e%2e", false),
        ("a%2Fb", true),
        ("%27or%271%27%3D%271", true),
        ("%00", true),
        ("%3Cscript%3E", true),
        ("x%23y", true),
        ("%F0%9F%9A%80", true),
        ("a.b", true),
    ];
    for (id, names_field) in connection_ids {
        let expect = if names_field {
            reject("connection_id")
        } else {
            reject_any()
        };
        let mut inv = base_invoice(ids.next());
        inv["id"] = json!(format!("inv_path_{}", ids.next()));
        let routes = [
            ("push to", "invoices", inv),
            ("test on", "exact/test", base_settings()),
            ("authorize", "exact/authorize", authorize()),
        ];
        for (verb, route, body) in routes {
            let what = format!("{verb} connection id {id:?}");
            let path = format!("/connections/{id}/{route}");
            out.push(json_case(g, what, &path, &body, expect.clone()));
        }
    }
    let unknown = [
        ("push to", "invoices", base_invoice(ids.next())),
        ("test on", "exact/test", base_settings()),
    ];
    for (verb, route, body) in unknown {
        let what = format!("{verb} an unknown connection");
        let path = format!("/connections/nobody_here/{route}");
        out.push(json_case(g, what, &path, &body, reject_any()));
    }
    let long_invoice_id = "x".repeat(129);
    let invoice_ids = [
        "a%20b",
        long_invoice_id.as_str(),
        "%27%20or%20%271",
        "%00",
        "%3Cscript%3E",
        "inv%2F1",
        "%C3%BC",
        "unknown_invoice",
    ];
    for id in invoice_ids {
        let path = format!("/connections/{CONN}/invoices/{id}");
        let what = format!("read invoice id {id:?}");
        out.push(bodiless_case(g, what, Method::GET, path));
    }
    let routes = [
        (push_path(), base_invoice(ids.next())),
        (test_path(), base_settings()),
        (authorize_path(), authorize()),
    ];
    let psa_key = e2e::PSA_KEY;
    let wrong_keys = [
        None,
        Some("Bearer wrong-key".to_owned()),
        Some(format!("Basic {psa_key}")),
        Some(format!("Bearer {psa_key}2")),
        Some(format!("Bearer{psa_key}")),
        Some("Bearer ".to_owned()),
        Some(format!("Bearer {}", &psa_key[..psa_key.len() - 1])),
    ];
    for (path, body) in &routes {
        for auth in &wrong_keys {
            let what = format!("{path} with Authorization {auth:?}");
            let unauthorized = Expect::Reject {
                field: None,
                status: Some(401),
            };
            let mut c = json_case(g, what, path, body, unauthorized);
            c.auth.clone_from(auth);
            out.push(c);
        }
    }
    let wrong_methods = [
        (Method::PUT, push_path()),
        (Method::DELETE, test_path()),
        (Method::PATCH, authorize_path()),
        (Method::GET, test_path()),
        (
            Method::DELETE,
            format!("/connections/{CONN}/invoices/inv_h1"),
        ),
    ];
    for (method, path) in wrong_methods {
        out.push(bodiless_case(g, format!("{method} {path}"), method, path));
    }
    out
}

#!/usr/bin/env python3
"""Writes events/: one API Gateway HTTP API (payload 2.0) event per route, the signed Exact webhook, the empty
validation POST and the two scheduled events. Run from the repository root: python3 scripts/make-events.py

The PSA key in the events is `local-psa-key-not-secret-0123456789` (the one `cargo run` and the end-to-end tests
use). The webhook is signed with `sandbox-webhook-secret`, the Exact sandbox's webhook secret: HashCode = upper-case hex
HMAC-SHA256(secret, raw bytes of the Content object)."""
import hashlib, hmac, json, pathlib

API = "abc123def4"
DOMAIN = f"{API}.execute-api.eu-west-1.amazonaws.com"
PSA_KEY = "local-psa-key-not-secret-0123456789"
WEBHOOK_SECRET = "sandbox-webhook-secret"
out = pathlib.Path("events")
out.mkdir(exist_ok=True)

INVOICE = {
    "id": "inv_8f2c",
    "reference": "INV-2025-0042",
    "name": "September 2025 - Website relaunch",
    "credit": False,
    "invoice_date": "2025-10-01",
    "period": {"from": "2025-09-01", "until": "2025-09-30"},
    "project": {"number": "P-1001", "name": "Website relaunch"},
    "company": {"id": "cmp_17", "name": "Acme B.V.", "address": "Stationsplein 1", "city": "Utrecht"},
    "contact": {"first_name": "Jane", "last_name": "Doe", "email": "jane@acme.example"},
    "lines": [{"number": 1, "name": "Consultancy", "description": "80 hours senior consultant",
               "amount": "8000.00", "item_code": None, "tax_category": None}],
}


def event(method, route, path, path_params=None, query="", body=None, auth=True, content_type="application/json"):
    headers = {"host": DOMAIN, "user-agent": "psa-backend/1.0", "x-forwarded-proto": "https"}
    if auth:
        headers["authorization"] = f"Bearer {PSA_KEY}"
    if body is not None:
        headers["content-type"] = content_type
    ev = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API,
            "domainName": DOMAIN,
            "domainPrefix": API,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10",
                     "userAgent": "psa-backend/1.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "22/Nov/2026:09:00:00 +0000",
            "timeEpoch": 1795338000000,
        },
        "isBase64Encoded": False,
    }
    if query:
        ev["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if path_params:
        ev["pathParameters"] = path_params
    if body is not None:
        ev["body"] = body
    return ev


def write(name, ev):
    (out / name).write_text(json.dumps(ev, indent=2) + "\n")


write("authorize.json", event("POST", "/connections/{connection_id}/exact/authorize",
                              "/connections/bu_1/exact/authorize", {"connection_id": "bu_1"},
                              body=json.dumps({"country": "nl", "return_url": "https://psa.example/settings"})))
write("callback.json", event("GET", "/exact/oauth/callback", "/exact/oauth/callback",
                             query="code=sample-code&state=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                             auth=False))
write("status.json", event("GET", "/connections/{connection_id}/exact", "/connections/bu_1/exact",
                           {"connection_id": "bu_1"}))
write("disconnect.json", event("DELETE", "/connections/{connection_id}/exact", "/connections/bu_1/exact",
                               {"connection_id": "bu_1"}))
write("test-connection.json", event("POST", "/connections/{connection_id}/exact/test", "/connections/bu_1/exact/test",
                                    {"connection_id": "bu_1"},
                                    body=json.dumps({"item_code": "CONSULT", "journal_code": "72", "tax_code": "",
                                                     "tax_categories": [{"category": "low", "exact_vat_code": "1"}],
                                                     "send_invoice_to_customer": False, "delivery": "psa"})))
write("push-invoice.json", event("POST", "/connections/{connection_id}/invoices", "/connections/bu_1/invoices",
                                 {"connection_id": "bu_1"}, body=json.dumps(INVOICE)))
write("get-invoice.json", event("GET", "/connections/{connection_id}/invoices/{invoice_id}",
                                "/connections/bu_1/invoices/inv_8f2c",
                                {"connection_id": "bu_1", "invoice_id": "inv_8f2c"}))
content = ('{"Topic":"BankEntries","ClientId":"3f1c2b7e-8d4a-4c61-9b2e-5a7d0e9c1f42","Division":1001,"Action":"Update",'
           '"Key":"b0a5cf36-2f5e-4d8e-9a64-0c2f4b8e1d11",'
           '"ExactOnlineEndpoint":"https://start.exactonline.nl/api/v1/1001/financialtransaction/BankEntries(guid\'b0a5cf36-2f5e-4d8e-9a64-0c2f4b8e1d11\')",'
           '"EventCreatedOn":"2026-11-22T09:00:00.000"}')
sig = hmac.new(WEBHOOK_SECRET.encode(), content.encode(), hashlib.sha256).hexdigest().upper()
write("webhook-signed.json", event("POST", "/exact/webhooks", "/exact/webhooks", auth=False,
                                   body='{"Content":' + content + ',"HashCode":"' + sig + '"}'))
validation = event("POST", "/exact/webhooks", "/exact/webhooks", auth=False)
validation["headers"]["content-length"] = "0"
write("webhook-validation.json", validation)
write("invoice.json", INVOICE)
write("schedule-keep-alive.json", {"job": "keep-alive"})
write("schedule-reconcile.json", {"job": "reconcile"})
print("wrote", len(list(out.glob("*.json"))), "files to events/")

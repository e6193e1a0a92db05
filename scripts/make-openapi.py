#!/usr/bin/env python3
"""Writes docs/openapi.json, the OpenAPI 3 description of the connector's HTTP API (the PSA-facing routes and the two
Exact-facing ones). Kept as a script so the document stays consistent; tests/tests/openapi.rs checks it against the
handlers' routes and answers. Run from the repository root: python3 scripts/make-openapi.py"""
import json, pathlib

err = {"$ref": "#/components/responses/Error"}
conn_param = {"name": "connection_id", "in": "path", "required": True,
              "description": "One PSA business unit.", "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}
inv_param = {"name": "invoice_id", "in": "path", "required": True, "description": "The PSA invoice id.",
             "schema": {"type": "string", "maxLength": 128}}
secured = [{"psaKey": []}]


def ok(desc, schema_ref, status="200"):
    return {status: {"description": desc, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}}


invoice_example = json.loads(pathlib.Path("events/invoice.json").read_text())

doc = {
    "openapi": "3.0.3",
    "info": {
        "title": "psa-exact",
        "version": "0.1.0",
        "description": "Connects a PSA business unit to Exact Online, pushes finished invoices into Exact exactly once, "
                       "and reports payments. PSA-facing routes need `Authorization: Bearer <psa_api_key>`. Errors use "
                       "one envelope: `{\"error\":{\"code\",\"message\",\"field\"?,\"exact_message\"?}}`; 429 and "
                       "some 409/503 answers carry `Retry-After`.",
    },
    "servers": [{"url": "https://{api}.execute-api.{region}.amazonaws.com",
                 "variables": {"api": {"default": "abc123def4"}, "region": {"default": "eu-west-1"}}}],
    "paths": {
        "/connections/{connection_id}/exact/authorize": {"post": {
            "operationId": "authorize", "summary": "Start connecting: the Exact sign-in URL for a country",
            "security": secured, "parameters": [conn_param],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/AuthorizeRequest"},
                "example": {"country": "nl", "return_url": "https://psa.example/settings"}}}},
            "responses": {**ok("Open `authorize_url` in the user's browser.", "#/components/schemas/AuthorizeResponse"),
                          "400": err, "401": err, "503": err}}},
        "/exact/oauth/callback": {"get": {
            "operationId": "oauthCallback", "summary": "Exact's redirect after sign-in (browser, public)",
            "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                           for n in ("code", "state", "error")],
            "responses": {"302": {"description": "Back to the return URL with `exact=connected&division=N`, "
                                                  "`exact=denied` or `exact=error&reason=…`",
                                  "headers": {"Location": {"schema": {"type": "string"}}}},
                          "400": {"description": "The state is missing, unknown, expired or used: an HTML page; "
                                                 "nothing stored.", "content": {"text/html": {}}}}}},
        "/connections/{connection_id}/exact": {
            "get": {"operationId": "status", "summary": "Connection status for the settings screen",
                    "security": secured, "parameters": [conn_param],
                    "responses": {**ok("Never contains a token.", "#/components/schemas/Status"), "400": err, "401": err}},
            "delete": {"operationId": "disconnect", "summary": "Disconnect (idempotent)",
                       "security": secured, "parameters": [conn_param],
                       "responses": {**ok("Disconnected.", "#/components/schemas/Status"), "401": err, "404": err}}},
        "/connections/{connection_id}/exact/test": {"post": {
            "operationId": "testConnection", "summary": "Check the invoice settings and process a test invoice",
            "security": secured, "parameters": [conn_param],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Settings"},
                "example": {"item_code": "CONSULT", "journal_code": "70", "tax_code": "",
                            "tax_categories": [{"category": "low", "exact_vat_code": "1"}],
                            "send_invoice_to_customer": False, "delivery": "psa"}}}},
            "responses": {**ok("All checks passed; the settings are saved.", "#/components/schemas/TestResult"),
                          "422": {"description": "A check failed or Exact refused the test invoice; settings unchanged.",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TestResult"}}}},
                          "400": err, "401": err, "404": err, "409": err, "429": err, "502": err, "503": err}}},
        "/connections/{connection_id}/invoices": {"post": {
            "operationId": "pushInvoice", "summary": "Push a finished invoice into Exact (exactly once per invoice id)",
            "security": secured, "parameters": [conn_param],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Invoice"}, "example": invoice_example}}},
            "responses": {**ok("Created in Exact.", "#/components/schemas/PushResult", "201"),
                          **ok("The same body was pushed before: the saved answer.", "#/components/schemas/PushResult"),
                          "400": err, "401": err, "404": err,
                          "409": {"$ref": "#/components/responses/Conflict"},
                          "422": err, "429": err, "502": err, "503": err}}},
        "/connections/{connection_id}/invoices/{invoice_id}": {"get": {
            "operationId": "getInvoice", "summary": "An invoice's state: created, sent or paid",
            "security": secured, "parameters": [conn_param, inv_param],
            "responses": {**ok("The stored state.", "#/components/schemas/InvoiceState"), "401": err, "404": err}}},
        "/exact/webhooks": {"post": {
            "operationId": "exactWebhook", "summary": "Exact webhook deliveries (public, verified by HashCode)",
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ExactWebhook"}}}},
            "responses": {"200": {"description": "Accepted (also Exact's empty validation POST)."}, "401": err}}},
    },
    "components": {
        "securitySchemes": {"psaKey": {"type": "http", "scheme": "bearer", "description": "The app secret's psa_api_key."}},
        "responses": {
            "Error": {"description": "The error envelope.",
                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "Conflict": {"description": "Not connected / needs reconnect / not configured (test the connection first) / "
                                        "same invoice id with a different body / a push of it is in progress "
                                        "(Retry-After).",
                         "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "example": "invalid_field"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "The field at fault (400)."},
                    "exact_message": {"type": "string", "description": "Exact's own text, verbatim."}}}}},
            "AuthorizeRequest": {"type": "object", "required": ["country", "return_url"], "properties": {
                "country": {"type": "string", "enum": ["nl", "be", "de", "uk", "us", "es", "fr"]},
                "return_url": {"type": "string", "format": "uri", "description": "https (http only on localhost)"}}},
            "AuthorizeResponse": {"type": "object", "required": ["authorize_url"], "properties": {
                "authorize_url": {"type": "string", "format": "uri"},
                "expires_in": {"type": "integer", "description": "Seconds the sign-in stays valid (600)."}}},
            "Status": {"type": "object", "required": ["connection_id", "state", "connected", "needs_reconnect"],
                       "properties": {
                           "connection_id": {"type": "string"},
                           "state": {"type": "string", "enum": ["not_connected", "connected", "needs_reconnect", "disconnected"]},
                           "connected": {"type": "boolean"}, "needs_reconnect": {"type": "boolean"},
                           "needs_reconnect_reason": {"type": "string", "nullable": True},
                           "country": {"type": "string"}, "division": {"type": "integer", "nullable": True},
                           "division_name": {"type": "string", "nullable": True},
                           "connected_user": {"type": "object", "nullable": True},
                           "connected_at": {"type": "string", "format": "date-time", "nullable": True},
                           "webhook_topics": {"type": "array", "items": {"type": "string"}},
                           "settings": {"type": "object", "nullable": True}}},
            "Settings": {"type": "object", "required": ["item_code", "journal_code"], "properties": {
                "item_code": {"type": "string"}, "journal_code": {"type": "string"},
                "tax_code": {"type": "string", "description": "Default VAT code; empty = `2`."},
                "tax_categories": {"type": "array", "items": {"type": "object", "required": ["category", "exact_vat_code"],
                                                               "properties": {"category": {"type": "string"},
                                                                              "exact_vat_code": {"type": "string"}}}},
                "send_invoice_to_customer": {"type": "boolean"},
                "delivery": {"type": "string", "enum": ["psa", "exact"]}}},
            "TestResult": {"type": "object", "required": ["ok", "checks"], "properties": {
                "ok": {"type": "boolean"}, "division": {"type": "integer"}, "division_name": {"type": "string"},
                "checks": {"type": "array", "items": {"type": "object", "required": ["name", "ok"], "properties": {
                    "name": {"type": "string"}, "ok": {"type": "boolean"}, "message": {"type": "string"}}}},
                "test_invoice": {"type": "object"}, "error": {"type": "object"},
                "exact_calls": {"type": "integer"}}},
            "Invoice": {"type": "object",
                        "required": ["id", "reference", "name", "invoice_date", "project", "company", "contact", "lines"],
                        "properties": {
                            "id": {"type": "string"}, "reference": {"type": "string"}, "name": {"type": "string"},
                            "credit": {"type": "boolean"}, "invoice_date": {"type": "string", "format": "date"},
                            "period": {"type": "object", "nullable": True, "properties": {
                                "from": {"type": "string", "format": "date"}, "until": {"type": "string", "format": "date"}}},
                            "project": {"type": "object", "required": ["number", "name"]},
                            "company": {"type": "object", "required": ["id", "name"]},
                            "contact": {"type": "object", "required": ["email"]},
                            "lines": {"type": "array", "minItems": 1, "items": {"type": "object",
                                      "required": ["number", "name", "amount"], "properties": {
                                          "number": {"type": "integer"}, "name": {"type": "string"},
                                          "description": {"type": "string"},
                                          "amount": {"type": "string", "description": "Decimal as a string, e.g. \"8000.00\"."},
                                          "item_code": {"type": "string", "nullable": True},
                                          "tax_category": {"type": "string", "nullable": True}}}}}},
            "PushResult": {"type": "object",
                           "required": ["invoice_id", "exact_invoice_id", "status", "account_id", "contact_id"],
                           "properties": {
                               "invoice_id": {"type": "string"}, "exact_invoice_id": {"type": "string"},
                               "exact_invoice_number": {"type": "integer", "nullable": True},
                               "status": {"type": "string", "enum": ["created", "sent"]},
                               "account_id": {"type": "string"}, "contact_id": {"type": "string"},
                               "exact_warning": {"type": "string", "description": "Exact processed the invoice but "
                                                 "reported a problem (e.g. the e-mail failed), verbatim."}}},
            "InvoiceState": {"type": "object", "required": ["invoice_id", "state"], "properties": {
                "invoice_id": {"type": "string"}, "state": {"type": "string", "enum": ["pending", "created", "sent", "paid"]},
                "status": {"type": "string", "description": "Same as `state` (the name the push answer uses)."},
                "reference": {"type": "string", "nullable": True}, "division": {"type": "integer", "nullable": True},
                "exact_invoice_id": {"type": "string", "nullable": True},
                "exact_invoice_number": {"type": "integer", "nullable": True},
                "account_id": {"type": "string", "nullable": True}, "contact_id": {"type": "string", "nullable": True},
                "paid_at": {"type": "string", "format": "date-time", "nullable": True}}},
            "ExactWebhook": {"type": "object", "required": ["Content", "HashCode"], "properties": {
                "Content": {"type": "object"}, "HashCode": {"type": "string", "pattern": "^[0-9A-F]{64}$"}}},
        },
    },
}
pathlib.Path("docs").mkdir(exist_ok=True)
pathlib.Path("docs/openapi.json").write_text(json.dumps(doc, indent=2) + "\n")
print("wrote docs/openapi.json with", sum(len(v) for v in doc["paths"].values()), "operations")

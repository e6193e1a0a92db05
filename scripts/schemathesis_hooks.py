"""Schemathesis hooks for `make schemathesis`: generated bodies are made to keep the cross-field rules JSON Schema
cannot state and docs/openapi.json states in words, so a schema-valid body is also valid for the handlers:
unique line numbers, `"{number} - {name}"` of a line at most 60 characters, `period.from` on or before
`period.until`, a line number written without a fraction (Invoice), and each tax category mapped once (Settings). Only parts that are already valid are
changed, so a schema-violating body stays schema-violating."""
import re

import schemathesis

CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f]")
DATE = re.compile(r"^(19[0-9]{2}|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
MAX_NUMBER = 4294967295


def _valid_number(n):
    return isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_NUMBER


def _fix_invoice(inv):
    if not isinstance(inv, dict):
        return
    period = inv.get("period")
    if isinstance(period, dict):
        a, b = period.get("from"), period.get("until")
        if isinstance(a, str) and isinstance(b, str) and DATE.match(a) and DATE.match(b) and a > b:
            period["from"], period["until"] = b, a
    lines = inv.get("lines")
    if not isinstance(lines, list):
        return
    for line in lines:
        # JSON Schema counts 7.0 as an integer; the handler takes whole numbers written without a fraction.
        n = line.get("number") if isinstance(line, dict) else None
        if isinstance(n, float) and n.is_integer() and 1 <= n <= MAX_NUMBER:
            line["number"] = int(n)
    seen = {l["number"] for l in lines if isinstance(l, dict) and _valid_number(l.get("number"))}
    used = set()
    for line in lines:
        if not isinstance(line, dict) or not _valid_number(line.get("number")):
            continue
        n = line["number"]
        if n in used:
            n = 1
            while n in seen or n in used:
                n += 1
            line["number"] = n
        used.add(n)
        name = line.get("name")
        if isinstance(name, str) and len(name) <= 60 and not CONTROL.search(name):
            room = 60 - 3 - len(str(n))
            if len(name.strip()) > room:
                cut = name.strip()[:room].strip()
                line["name"] = cut or "x"


def _fix_settings(body):
    cats = body.get("tax_categories")
    if not isinstance(cats, list):
        return
    seen = set()
    for i, c in enumerate(cats):
        if isinstance(c, dict) and isinstance(c.get("category"), str):
            key = c["category"].strip()
            if key in seen:
                c["category"] = f"category {i}"
                key = c["category"]
            seen.add(key)


@schemathesis.hook
def map_case(ctx, case):
    body = case.body
    if isinstance(body, dict):
        path = case.operation.path
        if path.endswith("/invoices"):
            _fix_invoice(body)
        elif path.endswith("/invoices:batch") and isinstance(body.get("invoices"), list):
            for inv in body["invoices"]:
                _fix_invoice(inv)
        elif path.endswith("/exact/test"):
            _fix_settings(body)
    return case

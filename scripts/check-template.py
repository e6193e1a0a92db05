#!/usr/bin/env python3
"""Checks template.yaml beyond cfn-lint: expands the SAM transform offline and fails on a dependency cycle
(cfn-lint and `sam validate --lint` do not see cycles created by the transform, e.g. a function's environment
referencing the HttpApi whose generated routes reference the function), and on routes missing from the list below (docs/openapi.json's operations)."""
import json, re, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROUTES = {
    ("POST", "/connections/{connection_id}/exact/authorize"),
    ("GET", "/exact/oauth/callback"),
    ("GET", "/connections/{connection_id}/exact"),
    ("DELETE", "/connections/{connection_id}/exact"),
    ("POST", "/connections/{connection_id}/exact/test"),
    ("POST", "/connections/{connection_id}/invoices"),
    ("POST", "/connections/{connection_id}/invoices:batch"),
    ("GET", "/connections/{connection_id}/invoices/{invoice_id}"),
    ("POST", "/connections/{connection_id}/invoices/{invoice_id}/notify"),
    ("POST", "/exact/webhooks"),
}

def refs(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                s = v[0] if isinstance(v, list) else v
                out.update(m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", s))
                if isinstance(v, list):
                    refs(v[1], out)
            else:
                refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)

def main(path):
    src = open(path).read()
    tpl = yaml_parse(re.sub(r"CodeUri: \S+", "CodeUri: s3://bucket/key", src))
    out = transform(tpl, {}, type("NoPolicies", (), {"load": lambda self: {}})())
    res = out["Resources"]
    graph = {}
    for name, r in res.items():
        deps = set()
        refs({k: v for k, v in r.items() if k != "DependsOn"}, deps)
        d = r.get("DependsOn", [])
        deps.update([d] if isinstance(d, str) else d)
        graph[name] = {x for x in deps if x in res}
    state, stack = {}, []
    def visit(n):
        state[n] = 1; stack.append(n)
        for m in graph[n]:
            if state.get(m) == 1:
                raise SystemExit("dependency cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        state[n] = 2; stack.pop()
    for n in graph:
        if n not in state:
            visit(n)
    found = set()
    for r in res.values():
        if r["Type"] == "AWS::ApiGatewayV2::Api":
            for p, ops in r["Properties"].get("Body", {}).get("paths", {}).items():
                found.update((m.upper(), p) for m in ops if m != "parameters")
    missing = ROUTES - found
    if missing:
        raise SystemExit(f"routes missing from the HttpApi: {sorted(missing)}")
    print(f"template ok: {len(res)} resources after transform, no dependency cycle, {len(found)} routes")

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")

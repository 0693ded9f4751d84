#!/usr/bin/env python3
"""Evaluates a ValidatingAdmissionPolicy's CEL against admission requests, with cel-python.

Used by tests/integration/deploy.rs, so the expressions tested are the ones deploy/ ships.
Reads JSON on stdin:

    {"policy": <the rendered ValidatingAdmissionPolicy>,
     "cases": [{"name": ..., "request": ..., "object": ..., "oldObject": ...}, ...]}

and prints one JSON line per case: {"name", "matched", "allowed", "denials", "errors"}.
It follows the API server's order: matchConstraints (resource rules), then matchConditions
(all must be true), then the variables in order, then every validation; failurePolicy Fail
turns an evaluation error into a denial. Errors are reported apart from denials, so a test can
require that a policy never fails to evaluate.
"""

import json
import sys

import celpy
from celpy import celtypes

ENV = celpy.Environment()


def evaluate(text, activation):
    """The expression's value, or RuntimeError with CEL's message (parse or evaluation)."""
    try:
        value = ENV.program(ENV.compile(text)).evaluate(activation)
    except (celpy.CELParseError, celpy.CELEvalError) as err:
        raise RuntimeError(str(err.args[0]) if err.args else str(err)) from err
    if isinstance(value, celpy.CELEvalError):
        raise RuntimeError(str(value.args[0]) if value.args else str(value))
    return value


def rule_matches(rules, request):
    res = request["resource"]
    sub = request.get("subResource") or ""
    name = res["resource"] + ("/" + sub if sub else "")
    for rule in rules:
        if res["group"] not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
            continue
        versions = rule.get("apiVersions", [])
        if res["version"] not in versions and "*" not in versions:
            continue
        ops = rule.get("operations", [])
        if request["operation"] not in ops and "*" not in ops:
            continue
        for pattern in rule.get("resources", []):
            if pattern in ("*", "*/*", name):
                return True
            if pattern.endswith("/*") and sub and pattern[:-2] == res["resource"]:
                return True
    return False


def run_case(spec, case):
    result = {"name": case["name"], "matched": False, "allowed": True, "denials": [], "errors": []}
    request = case["request"]
    if not rule_matches(spec["matchConstraints"]["resourceRules"], request):
        return result
    activation = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(case.get("object")),
        "oldObject": celpy.json_to_cel(case.get("oldObject")),
        "params": celpy.json_to_cel(None),
        "namespaceObject": celpy.json_to_cel(None),
    }
    fail = spec.get("failurePolicy", "Fail") == "Fail"

    def deny_on_error(what, err):
        result["errors"].append(f"{what}: {err}")
        if fail:
            result["allowed"] = False

    for cond in spec.get("matchConditions", []):
        try:
            if not evaluate(cond["expression"], activation):
                return result
        except RuntimeError as err:
            result["matched"] = True
            deny_on_error(f"matchCondition {cond['name']}", err)
            return result
    result["matched"] = True

    variables = {}
    for var in spec.get("variables", []):
        activation["variables"] = celtypes.MapType(
            {celtypes.StringType(k): v for k, v in variables.items()}
        )
        try:
            variables[var["name"]] = evaluate(var["expression"], activation)
        except RuntimeError as err:
            deny_on_error(f"variable {var['name']}", err)
            return result
    activation["variables"] = celtypes.MapType(
        {celtypes.StringType(k): v for k, v in variables.items()}
    )

    for v in spec.get("validations", []):
        try:
            ok = evaluate(v["expression"], activation)
        except RuntimeError as err:
            deny_on_error(f"validation {v['expression'][:60]!r}", err)
            continue
        if not ok:
            result["allowed"] = False
            message = v.get("message", v["expression"])
            if "messageExpression" in v:
                try:
                    message = str(evaluate(v["messageExpression"], activation))
                except RuntimeError as err:
                    result["errors"].append(f"messageExpression: {err}")
            result["denials"].append(message)
    return result


def main():
    doc = json.load(sys.stdin)
    spec = doc["policy"]["spec"]
    for case in doc["cases"]:
        print(json.dumps(run_case(spec, case)))


if __name__ == "__main__":
    main()

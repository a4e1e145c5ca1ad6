"""Schemathesis hooks of filiera's suite (`crates/filiera/tests/schemathesis.rs`).

One check, `business_rule_refusals_only`, runs in place of Schemathesis's
`positive_data_acceptance`. Like it, it wants a request valid against `/openapi.json` accepted
(2xx, 3xx), or refused for lack of rights (401, 403), for naming nothing (404), for the state it
meets (409) or for load (429); in addition it accepts

- 410 `personal_data_erased`: the state a personal-data request meets once the identity was
  erased for good (a 409 by another name);
- on the operations of `BUSINESS_RULES` only, a 422 whose problem `code` and `field` are one of
  that operation's business rules: rules that no JSON Schema can hold because they compare the
  request with the beneficiary's history, the clock, or another parameter, each documented in
  the operation's 422 response and in docs/openapi.md.

Any other refusal of valid data fails the run, a 422 for any other reason included: the
document would not be saying what the server enforces.
"""

import json

import schemathesis
from schemathesis.specs.openapi.checks import is_unexpected_http_status_case

# Effective dates in order: not before the pathway's latest date (`out_of_order`), at most one
# day ahead of today (`date_in_future`), not before 2000-01-01 (`date_too_early`).
DATES_IN_ORDER = {
    ("out_of_order", "on"),
    ("date_in_future", "on"),
    ("date_too_early", "on"),
}
# An `Idempotency-Key` already used for a different request.
IDEMPOTENCY_KEY_REUSE = {("idempotency_key_reused", "Idempotency-Key")}
# A report period whose `from` is after its `to`, or a series of more than 120 months.
PERIOD_IN_ORDER = {("invalid_field", "from")}

# Per operation id: the (code, field) pairs of the business rules that may refuse valid data.
BUSINESS_RULES = {
    "enrol": DATES_IN_ORDER | IDEMPOTENCY_KEY_REUSE,
    "enter_stage": DATES_IN_ORDER | IDEMPOTENCY_KEY_REUSE,
    "exit_stage": DATES_IN_ORDER | IDEMPOTENCY_KEY_REUSE,
    # One territory change: the new territory is not the current one.
    "change_territory": DATES_IN_ORDER
    | IDEMPOTENCY_KEY_REUSE
    | {("same_territory", "territory")},
    "close": DATES_IN_ORDER | IDEMPOTENCY_KEY_REUSE,
    "reopen": DATES_IN_ORDER | IDEMPOTENCY_KEY_REUSE,
    "assess_needs": DATES_IN_ORDER | IDEMPOTENCY_KEY_REUSE,
    "undo": IDEMPOTENCY_KEY_REUSE,
    "territory_metrics": PERIOD_IN_ORDER,
    "metrics_series": PERIOD_IN_ORDER,
    "metrics_breakdown": PERIOD_IN_ORDER,
    "provider_scorecard": PERIOD_IN_ORDER,
    "regional_report": PERIOD_IN_ORDER,
}

# What Schemathesis's own `positive_data_acceptance` accepts besides 2xx and 3xx.
ACCEPTED = {401, 403, 404, 409, 429}


@schemathesis.check
def business_rule_refusals_only(ctx, response, case):
    """Valid data is accepted, or refused by the state it meets or a documented business rule."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or is_unexpected_http_status_case(case):
        return None
    status = response.status_code
    if status < 400 or status in ACCEPTED or status >= 500:
        return None
    try:
        problem = json.loads(response.content)
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    code, field = problem.get("code"), problem.get("field")
    if status == 410 and code == "personal_data_erased":
        return None
    operation_id = case.operation.definition.raw.get("operationId")
    if status == 422 and (code, field) in BUSINESS_RULES.get(operation_id, ()):
        return None
    raise AssertionError(
        f"Valid data should have been accepted: `{operation_id}` answered {status} `{code}` "
        f"(field `{field}`), which is no business rule of this operation: {problem.get('detail')}"
    )

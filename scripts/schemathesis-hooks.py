# Schemathesis hooks for scripts/schemathesis (loaded through SCHEMATHESIS_HOOKS).
#
# `/openapi.json` states every rule a JSON Schema can: lengths, patterns, enums of the catalog,
# integer ranges, unknown fields refused. A few rules of the contract no schema can state: that
# a URL parses and names a public host, that a PEM certificate and key make a pair, the filter
# language, a time window relative to now (recovery's `since` within retention, before
# `until`), one parameter bounded by another (`http_status_min` <= `http_status_max`), and
# that an integer is written without a fraction (JSON Schema counts `302.0` as an integer;
# Herald, like most JSON APIs, reads `302.0` as a number with a fraction and refuses it). A
# request the document calls valid may break one of them, and is then rightly refused with a
# 422 naming it.
#
# So `positive_data_acceptance` runs on every operation, and this hook forgives exactly those
# refusals: a 422 whose `details` name only such rules. Any other refusal of schema-valid data
# (a field the document bounds wrongly, an enum that misses a value) still fails the run.
import json

import hypothesis.internal.lambda_sources as _lambda_sources
import schemathesis

# A CPython 3.11 bug (gh-106905: `ast.parse` at a deep recursion level raises "SystemError:
# AST constructor recursion depth mismatch") can strike Hypothesis while it parses a filter
# lambda's source only to *name* the lambda in a strategy's repr, which then aborts an
# operation's generation as a "Runtime Error" with no request sent. The name is cosmetic: fall
# back to a plain one rather than lose the run to the interpreter.
_describe_lambda = _lambda_sources.lambda_description


def _lambda_description_or_plain(f):
    try:
        return _describe_lambda(f)
    except SystemError:
        return "lambda"


_lambda_sources.lambda_description = _lambda_description_or_plain

# Field -> message prefixes the schema cannot express; an empty tuple forgives any message
# for that field (its whole language is beyond JSON Schema).
UNSTATABLE = {
    "url": (
        "must be an absolute URL",
        "must have a host",
        "must not contain user-info",
        "must not target a non-public",
        "must not contain whitespace or control characters",
    ),
    "headers": (),  # per-name messages: names Herald sets, a name twice, "<redacted>" unstored
    "client_certificate": (),
    "filter": (),
    "since": ("must be before until", "must be within the event retention window"),
    "http_status_min": ("must not exceed http_status_max",),
}

HEADER_MESSAGES = (
    "is set by Herald and cannot be overridden",
    "is a connection header and cannot be set",
    "named twice",
    "keeps a stored value, and there is none",
)


def integral_float(case, field: str) -> bool:
    """Whether the body sent `field` as a number like `302.0`."""
    body = case.body if isinstance(case.body, dict) else {}
    value = body.get(field)
    return isinstance(value, float) and value.is_integer()


def unstatable(case, field: str, message: str) -> bool:
    if integral_float(case, field):
        return True
    if field not in UNSTATABLE:
        return False
    if field == "headers":
        return any(text in message for text in HEADER_MESSAGES)
    prefixes = UNSTATABLE[field]
    return not prefixes or message.startswith(prefixes)


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    """Keeps every failure but a 422 of valid data that names only unstatable rules."""
    if failure.code != "ST202" or response.status_code != 422:
        return True
    try:
        details = json.loads(response.content)["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return True
    if not isinstance(details, dict) or not details:
        return True
    return not all(unstatable(case, field, str(message)) for field, message in details.items())

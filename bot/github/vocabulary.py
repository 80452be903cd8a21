"""GitHub's names and limits, each named once with the page where GitHub defines it.

Everything else in `bot/github/` (and the stand-in in tests/standins/github.py) uses these.
"""
from __future__ import annotations

# Webhook deliveries: headers and events.
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers
HEADER_EVENT = "X-GitHub-Event"
HEADER_DELIVERY = "X-GitHub-Delivery"
HEADER_SIGNATURE = "X-Hub-Signature-256"
# "Payloads are capped at 25 MB." https://docs.github.com/en/webhooks/webhook-events-and-payloads#payload-cap
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024

# Event names, https://docs.github.com/en/webhooks/webhook-events-and-payloads
PING = "ping"
PULL_REQUEST = "pull_request"  # #pull_request
PULL_REQUEST_REVIEW = "pull_request_review"  # #pull_request_review
CHECK_RUN = "check_run"  # #check_run
STATUS = "status"  # #status
PUSH = "push"  # #push
MERGE_GROUP = "merge_group"  # #merge_group
# The events the GitHub App (or repository webhook) must subscribe to (docs/operations.md lists them).
SUBSCRIBED_EVENTS = (PULL_REQUEST, PULL_REQUEST_REVIEW, CHECK_RUN, STATUS, PUSH, MERGE_GROUP)

# pull_request actions that change what a PR would merge, so the gate is evaluated again.
# https://docs.github.com/en/webhooks/webhook-events-and-payloads?actionType=edited#pull_request
REEVALUATE_ACTIONS = frozenset({"opened", "reopened", "synchronize", "ready_for_review", "labeled", "unlabeled"})
EDITED = "edited"  # re-evaluated only when `changes.base` is present (a retarget)
CLOSED = "closed"  # a merge when `pull_request.merged` is true, else a plain close
# merge_group: https://docs.github.com/en/webhooks/webhook-events-and-payloads#merge_group
CHECKS_REQUESTED = "checks_requested"

# The gate's name: the commit status context (token auth) and the check run name (GitHub App).
# https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
# https://docs.github.com/en/rest/checks/runs#create-a-check-run
GATE_CONTEXT = "fluxbot/change-gate"
STATUS_DESCRIPTION_MAX = 140  # GitHub refuses longer status descriptions with 422
STATUS_STATES = ("error", "failure", "pending", "success")
# Check run conclusions that mean a check failed (for thread notices).
# https://docs.github.com/en/rest/checks/runs#create-a-check-run (conclusion)
FAILED_CONCLUSIONS = frozenset({"failure", "timed_out", "cancelled", "action_required"})

# "Responses include a maximum of 3000 files."
# https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files
MAX_PR_FILES = 3000
MAX_PER_PAGE = 100  # https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api

# Rate limits: a 403 or a 429; honour `retry-after`, else wait until `x-ratelimit-reset` when
# `x-ratelimit-remaining` is 0, else at least a minute.
# https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit
RATE_LIMIT_STATUSES = (403, 429)
DEFAULT_RETRY_AFTER = 60

# Merge a pull request: 405 not mergeable (method not allowed, checks missing, merge queue
# required), 409 the head moved past the `sha` sent, 422 validation failed.
# https://docs.github.com/en/rest/pulls/pulls#merge-a-pull-request
MERGE_METHODS = ("merge", "squash", "rebase")
# The repository settings that allow each method. https://docs.github.com/en/rest/repos/repos#get-a-repository
MERGE_METHOD_SETTINGS = {"merge": "allow_merge_commit", "squash": "allow_squash_merge", "rebase": "allow_rebase_merge"}

"""The App Home tab: the fleet (pins, how far behind, open changes, freezes), the viewer's pending
confirmations and the change requests awaiting approval.

Published with views.publish when a user opens the tab (the `app_home_opened` event,
https://docs.slack.dev/surfaces/app-home). Reads only: the repository snapshot, the forge's open
PRs and the store; it journals and audits nothing.
"""
from __future__ import annotations

from typing import Any

from bot.slack import limits
from bot.slack.blocks import to_pages
from bot.slack.markup import Names
from commands.model import Message, person
from commands.status import behind


def home_view(bot: Any, user: str, now: float, names: Names) -> dict[str, Any]:
    """The Home tab for `user`, within Slack's 100 blocks for a view."""
    repo = bot.snapshot()
    open_prs = {pr.cluster: pr for pr in bot.forge.open_prs() if pr.state == "open"}
    freezes = bot.store.freezes()
    rows = [("cluster", "pin", "productive", "behind", "open change", "frozen")]
    for cluster in repo.clusters:
        pr = open_prs.get(cluster.name)
        frozen = freezes.get(cluster.name) or freezes.get("all")
        rows.append((cluster.name, str(cluster.pin) if cluster.pin else "?", "yes" if cluster.productive else "no",
                     behind(repo, cluster), f"#{pr.number}" if pr else "", f"by {person(frozen[1])}" if frozen else ""))
    latest = repo.latest.tag if repo.latest else "(no releases)"
    messages = [Message(f"Fleet: {len(repo.clusters)} clusters · latest release {latest}", table=tuple(rows))]
    mine = bot.store.query("SELECT text, channel FROM confirmations WHERE \"user\" = ? AND state = 'pending'"
                           " AND expires > ? ORDER BY created", user, now)
    messages.append(Message(f"Waiting for your confirmation: {len(mine)}",
                            lines=tuple(f"`{row['text']}` in <#{row['channel']}>" for row in mine)))
    gates = bot.store.pending_gates()
    messages.append(Message(f"Change requests awaiting approval: {len(gates)}", lines=tuple(
        f"PR #{gate['number']} (`{gate['head'][:7]}`), requested by {person(gate['requester'])}"
        + (f", card in <#{gate['request_channel']}>" if gate["request_channel"] not in (None, "", "webhook") else "")
        for gate in gates)))
    blocks: list[dict[str, Any]] = []
    for message in messages:
        for page in to_pages(message, None, names):
            blocks += page.blocks
    if len(blocks) > limits.MAX_BLOCKS_PER_VIEW:
        cut = len(blocks) - limits.MAX_BLOCKS_PER_VIEW + 1
        blocks = blocks[: limits.MAX_BLOCKS_PER_VIEW - 1] + [{"type": "context", "elements": [{
            "type": "mrkdwn", "text": f"{cut} more blocks are not shown here: ask `@fluxbot status` in a channel"}]}]
    return {"type": "home", "blocks": blocks}

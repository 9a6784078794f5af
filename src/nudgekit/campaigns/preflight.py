"""Preflight: the checks that stop `nudge apply` before anything irreversible — read from the campaign and from
its dry run (campaigns/dry.py), which rendered and judged the message for every person in the audience, so a
template fault or a refused message shows up here rather than in the outbox.

Each check says ok, warning (shown, does not stop) or error (stops apply), in words that say what to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from urllib.parse import urlsplit

from nudgekit.campaigns.run import Outcome
from nudgekit.campaigns.spec import CampaignSpec, Sending
from nudgekit.config import Settings

MESSAGE_FAULTS = {
    "template_error": "the template fails to render",
    "message_refused": "the channel refuses the message",
    "refused_after_label": "the message is refused once the (광고) label and opt-out line are added",
    "label_look_alike": "the text has a look-alike of the (광고) label",
    "no_unsubscribe_link": "advertising email has no unsubscribe link (set public_url)",
    "no_push_optout": "advertising push has no opt-out sentence (set [sender] push_optout)",
    "no_optout_080": "advertising text messages need the free 080 opt-out number (set [sender] optout_080)",
    "ad_on_alimtalk": "AlimTalk is for informational messages only",
}
"""Skip reasons that are the message's fault, not the person's: one is enough to stop the campaign."""
SPECIFIC = ("template_error", "message_refused", "refused_after_label", "label_look_alike")
"""Faults whose first detail says more than the description (which field, what the channel said)."""
NIGHT_FROM, NIGHT_UNTIL = time(20, 50), time(8, 0)
"""The night window for advertising (21:00-08:00 in Korea), from Kakao's earlier 20:50 cut-off."""
NIGHT = ("night", "kakao_ad_hours", "night_dropped", "kakao_ad_hours_dropped")
BUDGET = ("over_budget", "no_balance")
URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s\"'<>)\]]+", re.IGNORECASE)


@dataclass(frozen=True)
class Check:
    name: str
    level: str
    """ok | warning | error"""
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "level": self.level, "message": self.message}


def _ok(name: str, message: str) -> Check:
    return Check(name, "ok", message)


def _error(name: str, message: str) -> Check:
    return Check(name, "error", message)


def _warning(name: str, message: str) -> Check:
    return Check(name, "warning", message)


def run(spec: CampaignSpec, outcome: Outcome, settings: Settings, everyone: int, sends_at: datetime) -> list[Check]:
    """Every check, in the order a marketer would fix them. `sends_at`: the run's wall-clock time where it
    goes (the workspace's zone, or each person's with local_time)."""
    return [goal(spec), *_audience(spec, outcome, settings, everyone), messages(outcome),
            purpose(spec, outcome), links(outcome, settings), _night(spec, outcome, sends_at),
            budget(spec, outcome), *data(outcome)]


def blocking(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == "error"]


def goal(spec: Sending) -> Check:
    if spec.goal is None:
        return _error("goal", "no goal: say which event counts as success (goal: {events: [order_completed]}) "
                      "so the campaign can be measured")
    return _ok("goal", f"goal {spec.goal.events[0]} within {spec.goal.window_days:g} days"
               + (f" (also {', '.join(spec.goal.events[1:])})" if len(spec.goal.events) > 1 else ""))


def _audience(spec: CampaignSpec, outcome: Outcome, settings: Settings, everyone: int) -> list[Check]:
    size = outcome.audience
    if size == 0:
        return [_error("audience", "the audience is empty: nobody matches the segment and stages today")]
    limit = spec.audience.max_percent or settings.campaigns.max_audience_percent
    share = size / everyone * 100 if everyone else 100.0
    if share > limit:
        return [_error("audience", f"{size:,} people is {share:.1f}% of everyone ({everyone:,}), over the "
                       f"{limit:g}% a campaign may reach without saying so: check the segment, or set "
                       f"audience.max_percent: {min(100, int(share) + 1)}")]
    return [_ok("audience", f"{size:,} people ({share:.1f}% of everyone)")]


def messages(outcome: Outcome) -> Check:
    faults = {reason: count for reason, count in outcome.skipped.items() if reason in MESSAGE_FAULTS}
    if not faults:
        return _ok("messages", "every message renders and passes its channel's checks")
    said = "; ".join(f"{MESSAGE_FAULTS[r]} for {n:,} people"
                     + (f" ({outcome.examples[r]})" if r in SPECIFIC and r in outcome.examples else "")
                     for r, n in sorted(faults.items(), key=lambda kv: -kv[1]))
    return _error("messages", said)


def purpose(spec: Sending, outcome: Outcome) -> Check:
    other = {p: n for p, n in outcome.purposes.items() if p != spec.purpose.value}
    if other:
        return _error("purpose", f"the campaign says {spec.purpose.value} but {sum(other.values()):,} of its "
                      f"messages are {', '.join(other)} (a saved template's `ad`): make them agree")
    return _ok("purpose", f"{spec.purpose.value}")


def links(outcome: Outcome, settings: Settings) -> Check:
    own = [d.lower().lstrip(".") for d in (*settings.links.domains, *settings.campaigns.link_domains)]
    scheme = (settings.links.app_scheme or "").lower()
    bad: dict[str, str] = {}
    unknown: set[str] = set()
    for fields in outcome.rendered:
        for url in _urls(fields):
            parts = urlsplit(url)
            if scheme and url.lower().startswith(scheme):
                continue
            if parts.scheme.lower() not in ("http", "https"):
                if parts.scheme.lower() not in ("tel", "mailto", "sms"):
                    bad[url] = f"{parts.scheme}:// is neither the web nor the app's scheme ([links] app_scheme)"
                continue
            host = (parts.hostname or "").lower()
            if "." not in host:
                bad[url] = "no web address in it"
            elif own and not any(host == d or host.endswith("." + d) for d in own):
                unknown.add(host)
    if bad:
        url, why = next(iter(bad.items()))
        return _error("links", f"{len(bad)} malformed link(s), e.g. {url}: {why}")
    if unknown:
        return _error("links", f"links to {', '.join(sorted(unknown))}, which are not the workspace's domains: "
                      "fix the link, or add the domain to [campaigns] link_domains if it is a partner's")
    if not own and outcome.rendered and any(_urls(f) for f in outcome.rendered):
        return _warning("links", "set [links] domains so preflight can tell your links from anyone else's")
    return _ok("links", "links are well formed and go to the workspace's own domains")


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        return [u.rstrip(".,;:!?") for u in URL.findall(value)]
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return []


def _night(spec: CampaignSpec, outcome: Outcome, sends_at: datetime) -> Check:
    """An advertisement scheduled in the night window is an error; people abroad for whom the daytime send
    falls at night (they wait until their morning) are a warning."""
    if not spec.advertising:
        return _ok("night", "informational: any hour")
    clock = sends_at.time()
    if clock >= NIGHT_FROM or clock < NIGHT_UNTIL:
        return _error("night", f"it goes at {clock:%H:%M}, in the night window for advertising (21:00-08:00, "
                      "Kakao from 20:50): schedule it between 08:00 and 20:50")
    held = sum(n for r, n in (*outcome.deferred.items(), *outcome.skipped.items()) if r in NIGHT)
    if held:
        return _warning("night", f"{held:,} people are where it is night then: they wait until their morning "
                        "(or are dropped with night: drop)")
    return _ok("night", f"goes at {clock:%H:%M}, in the hours advertising may go")


def budget(spec: Sending, outcome: Outcome) -> Check:
    short = {r: n for r, n in outcome.skipped.items() if r in BUDGET}
    if not short:
        return _ok("budget", f"costs {outcome.cost_krw:,.0f} KRW"
                   + (f" of a {spec.budget_krw:,.0f} KRW budget" if spec.budget_krw else ""))
    needed = outcome.cost_krw + outcome.short_krw
    if "no_balance" in short:
        return _error("budget", f"the prepaid balance is short: {short['no_balance']:,} messages would not go; "
                      f"the campaign needs about {needed:,.0f} KRW (`nudge balance add`)")
    return _error("budget", f"the budget is short: {short['over_budget']:,} messages would not go; the campaign "
                  f"needs about {needed:,.0f} KRW (budget_krw: {spec.budget_krw:,.0f})")


def data(outcome: Outcome) -> list[Check]:
    out = []
    for reason, what in (("missing_data", "have no value the message needs"),
                         ("no_coupon", "find no coupon code left in the pool")):
        count = outcome.skipped.get(reason, 0)
        if count:
            out.append(_warning(reason, f"{count:,} people {what} and are skipped ({outcome.examples.get(reason)})"))
    return out

"""The compliance and fatigue policy: one ordered chain of small rules every message passes before it may
enter the outbox, and again when it is handed to a provider (docs/policy.md).

Each rule is one module with one function `decide(candidate, person, now, state) -> Decision`; the chain's
order is the data in `policy.chain.CHAIN`; every gate's decisions are recorded (`nudge explain`).
"""

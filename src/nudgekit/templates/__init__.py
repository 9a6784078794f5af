"""Templates: a message's texts rendered for one person (sandboxed Jinja, strict about missing data) with
Korean-aware filters."""

from nudgekit.templates.render import (
    Context,
    Missing,
    Rendered,
    TemplateProblem,
    Unrendered,
    check,
    choose,
    render,
    render_text,
)

__all__ = ["Context", "Missing", "Rendered", "TemplateProblem", "Unrendered", "check", "choose", "render",
           "render_text"]

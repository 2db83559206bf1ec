"""The template check: every page template, branding overrides included, compiles before serving.

A branding override (conf/web/templates) with a syntax error, or saved in another encoding than
UTF-8, would otherwise pass `check-config` and `serve` and then turn every page, the error page
included, into a bare 500. `weston-proxy reload` already refuses such a template; this runs the
same compile (`proxy.reload.template_problems`) as a config check, so check-config and serve
refuse it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import jinja2

from proxy.config import Config
from proxy.errors import Problem
from proxy.reload import template_problems
from proxy.services import Services, template_env


@dataclass(frozen=True)
class _Templates:
    """What `template_problems` reads of the running parts: the config and its templates."""

    config: Config
    templates: jinja2.Environment


def check_templates(config: Config, problems: list[Problem]) -> None:
    """Append a Problem (file, line) for every template that does not compile."""
    # No services are started for a config check: the compile needs only these two of them.
    parts = _Templates(config, template_env(config))
    problems.extend(template_problems(cast(Services, parts)))

"""The template check: every page template, branding overrides included, compiles before serving.

A branding override (conf/web/templates) with a syntax error, or saved in another encoding than
UTF-8, would otherwise pass `check-config`, `serve` and `reload` and then turn every page, the
error page included, into a bare 500. It is one of the config checks (proxy.cli.CONFIG_CHECKS), so
check-config, serve and a reload (before it builds anything) all refuse such a template.
"""

from __future__ import annotations

import jinja2

from proxy.config import Config
from proxy.config_read import not_utf8
from proxy.errors import Problem
from proxy.services import template_env


def check_templates(config: Config, problems: list[Problem]) -> None:
    """Append a Problem (file, line) for every template that does not compile."""
    env = template_env(config)
    for name in env.list_templates(extensions=("html", "txt", "xml")):
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or name
            problems.append(Problem(where, f"line {exc.lineno}", f"template error: {exc.message}"))
        except UnicodeDecodeError as exc:
            # A branding template saved by an editor in Windows-1252 or Latin-1 ("Bibliothèque").
            problems.append(Problem(_template_file(config, name), "(file)", not_utf8(exc)))
        except jinja2.TemplateNotFound:
            # Listed but not there to read: a link whose target has gone (an OSError with no
            # strerror, which would read "cannot be read: None").
            problems.append(
                Problem(
                    _template_file(config, name),
                    "(file)",
                    "cannot be read: the file is not there (a link to a file that was moved or "
                    "deleted?)",
                )
            )
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            problems.append(
                Problem(_template_file(config, name), "(file)", f"cannot be read: {why}")
            )


def _template_file(config: Config, name: str) -> str:
    """Where a template comes from: the branding override folder if it has one by that name
    (a link there counts, even one whose target has gone)."""
    override = config.resolve("web/templates") / name
    return str(override) if override.is_file() or override.is_symlink() else name

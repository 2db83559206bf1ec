"""What the directory's password policy says about a patron's bind (the LDAP password-policy
controls of draft-behera-ldap-password-policy, as OpenLDAP's ppolicy overlay sends them).

A bind sends the request control; the bind's answer may carry the response control, whose value
says that the PIN has expired (`passwordExpired`), that it must be changed before the entry may
do anything else (`changeAfterReset`), how many grace logins an expired PIN has left, or how long
a PIN has before it expires (`timeBeforeExpiration`, within the policy's `pwdExpireWarning`).
slapd sends `passwordExpired` and `changeAfterReset` only after the PIN typed was the right one,
and the two warnings only with a successful bind, so telling the patron about any of them reveals
nothing before a correct PIN.

ldap3 decodes only the few response controls it knows (paged results, DirSync, pre/post-read)
and hands every other one over as its raw BER value, so the value is decoded here with pyasn1
(which ldap3 itself depends on). Nothing here carries a DN or a PIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyasn1.codec.ber import decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ

PASSWORD_POLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"
# (controlType, criticality, controlValue) as ldap3's bind takes it: not critical, so a
# directory without the policy overlay ignores it and binds as before.
REQUEST_CONTROL = (PASSWORD_POLICY_OID, False, None)

# The response's `error` values this proxy acts on.
PASSWORD_EXPIRED, ACCOUNT_LOCKED, CHANGE_AFTER_RESET = 0, 1, 2


def _context(number: int, *, constructed: bool = False) -> tag.Tag:
    form = tag.tagFormatConstructed if constructed else tag.tagFormatSimple
    return tag.Tag(tag.tagClassContext, form, number)


class _Warning(univ.Choice):  # type: ignore[misc]  # pyasn1 has no type information
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "timeBeforeExpiration", univ.Integer().subtype(implicitTag=_context(0))
        ),
        namedtype.NamedType(
            "graceAuthNsRemaining", univ.Integer().subtype(implicitTag=_context(1))
        ),
    )


class _ResponseValue(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        # A CHOICE cannot be tagged implicitly: [0] is explicit (constructed) around it.
        namedtype.OptionalNamedType(
            "warning", _Warning().subtype(explicitTag=_context(0, constructed=True))
        ),
        namedtype.OptionalNamedType("error", univ.Enumerated().subtype(implicitTag=_context(1))),
    )


@dataclass(frozen=True)
class PolicyAnswer:
    """The password-policy response to one bind: `error` (None when there is none), the grace
    logins left and the seconds before the PIN expires (each None when the directory said
    nothing about it; it says at most one of the two)."""

    error: int | None = None
    grace_left: int | None = None
    expires_in_s: int | None = None


NO_ANSWER = PolicyAnswer()


def policy_answer(result: Any) -> PolicyAnswer:
    """The password-policy response control in an ldap3 result dict, decoded; NO_ANSWER when
    there is none or it cannot be read (then the bind's own result code decides alone)."""
    controls = result.get("controls") if isinstance(result, dict) else None
    control = (controls or {}).get(PASSWORD_POLICY_OID)
    value = control.get("value") if isinstance(control, dict) else None
    if not isinstance(value, bytes | bytearray) or not value:
        return NO_ANSWER
    try:
        decoded, rest = decoder.decode(bytes(value), asn1Spec=_ResponseValue())
    except PyAsn1Error:
        return NO_ANSWER
    if rest:
        return NO_ANSWER
    error = int(decoded["error"]) if decoded["error"].isValue else None
    grace = expires = None
    warning = decoded["warning"]
    if warning.isValue and warning.getName() == "graceAuthNsRemaining":
        grace = max(0, int(warning.getComponent()))
    elif warning.isValue and warning.getName() == "timeBeforeExpiration":
        expires = max(0, int(warning.getComponent()))
    return PolicyAnswer(error=error, grace_left=grace, expires_in_s=expires)


__all__ = [
    "ACCOUNT_LOCKED",
    "CHANGE_AFTER_RESET",
    "NO_ANSWER",
    "PASSWORD_EXPIRED",
    "PASSWORD_POLICY_OID",
    "REQUEST_CONTROL",
    "PolicyAnswer",
    "policy_answer",
]

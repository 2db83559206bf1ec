"""The browser features a vendor's pages may use under the library's host names.

A vendor page runs on a mapped host, a name of the library's own proxy, so a permission prompt
it raises (`navigator.geolocation`, `getUserMedia`, …) shows the library's name: a patron who
trusts the library grants it, and the vendor's script then has the patron's position, camera or
microphone (P1). The browser keeps the grant per origin, past sign-out (Clear-Site-Data does not
reset permissions), so on a shared computer the next patron's session at that vendor gets it
with no prompt. And a few features (sensors, the keyboard map, the local fonts) are used by
scripts only to tell one device from another.

So every page the proxy relays carries its own `Permissions-Policy`, in place of the vendor's:
each feature below off, but those a vendor's TOML lists in `permissions` (a language-learning
database's pronunciation practice needs the microphone), which its own pages (`self`) may ask
for. Features no database needs and a patron would not miss stay as the browser has them
(full screen, autoplay, picture-in-picture, encrypted media for licensed video, writing to the
clipboard for "copy citation").
"""

from __future__ import annotations

# Features turned off unless a vendor lists them (names as Chromium recognises them; an unknown
# name only draws a console warning, so the list holds no speculative ones).
FEATURES = (
    "geolocation",
    "camera",
    "microphone",
    "display-capture",
    "clipboard-read",
    "usb",
    "serial",
    "hid",
    "bluetooth",
    "midi",
    "payment",
    "idle-detection",
    "local-fonts",
    "window-management",
    "screen-wake-lock",
    "accelerometer",
    "gyroscope",
    "magnetometer",
    "ambient-light-sensor",
    "xr-spatial-tracking",
    "publickey-credentials-get",
    "publickey-credentials-create",
    "identity-credentials-get",
    "otp-credentials",
    "storage-access",
    "attribution-reporting",
    "browsing-topics",
    "interest-cohort",
    "join-ad-interest-group",
    "run-ad-auction",
    "private-state-token-issuance",
    "private-state-token-redemption",
    "shared-storage",
    "shared-storage-select-url",
    "keyboard-map",
    "compute-pressure",
)
# Those a vendor may be granted (`permissions`): what a database could need of the patron. The
# advertising and fingerprinting ones never.
GRANTABLE = frozenset(
    {
        "geolocation",
        "camera",
        "microphone",
        "display-capture",
        "clipboard-read",
        "screen-wake-lock",
        "midi",
        "xr-spatial-tracking",
    }
)


def policy(granted: tuple[str, ...] = (), origins: tuple[str, ...] = ()) -> str:
    """The `Permissions-Policy` for a vendor's pages: every feature off but `granted`, which
    the page itself may use and hand to a frame of the vendor's own `origins` (its other mapped
    hosts: a lesson page whose recorder is framed from the vendor's media host; a frame gets it
    only where its `allow` attribute asks, as without the proxy). A wildcard host has no one
    origin to name: its frames are not given the feature."""
    allowed = " ".join(["self", *(f'"{o}"' for o in origins)])
    return ", ".join(f"{f}=({allowed})" if f in granted else f"{f}=()" for f in FEATURES)

"""Refuse an SDP offer aiortc cannot answer, before aiortc starts anything for it.

aiortc accepts some broken offers in ``setRemoteDescription`` and only fails later, in
``createAnswer`` or in a connect task of its own whose exception nobody retrieves (a bundle group
naming a section that does not exist, a section without ICE credentials, DTLS fingerprint,
direction or mid). Checking the parsed offer first turns all of these into one clear reason.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiortc import RTCIceCandidate
from aiortc.sdp import SessionDescription

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MEDIA_KINDS = ("audio", "video")


class OfferError(ValueError):
    """The offer cannot be answered; the message says why (one line, for the client)."""


def parse_networks(cidrs: Sequence[str]) -> list[Network]:
    """``media.allowed_candidate_networks`` as networks (ValueError names a bad entry)."""
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


def check_candidate(candidate: RTCIceCandidate, allowed: Sequence[Network]) -> None:
    """Raise OfferError when ``allowed`` is set and the candidate's address is outside it."""
    if not allowed:
        return
    try:
        address = ipaddress.ip_address(candidate.ip)
    except ValueError:
        raise OfferError(f"candidate address {candidate.ip[:64]!r} is not an IP address") from None
    if not any(address in network for network in allowed):
        raise OfferError(f"candidate address {address} is not in media.allowed_candidate_networks")


def check_offer(sdp: str, allowed: Sequence[Network] = ()) -> None:
    """Raise OfferError unless every media section of ``sdp`` is answerable (and, when
    ``allowed`` is set, its candidates are inside those networks)."""
    try:
        session = SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001 - aiortc's parser raises many kinds on bad input
        raise OfferError(f"unparsable SDP: {type(exc).__name__}: {exc}"[:200]) from None
    if not any(m.kind in MEDIA_KINDS for m in session.media):
        raise OfferError("no audio or video section")
    mids: list[str] = []
    for index, media in enumerate(session.media):
        where = f"section {index} ({media.kind})"
        mid = media.rtp.muxId
        if not mid:
            raise OfferError(f"{where} has no a=mid")
        if mid in mids:
            raise OfferError(f"{where} repeats mid {mid!r}")
        mids.append(mid)
        if media.kind not in MEDIA_KINDS:
            continue
        if media.direction is None:
            raise OfferError(f"{where} has no direction (a=sendrecv/sendonly/recvonly/inactive)")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise OfferError(f"{where} has no ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise OfferError(f"{where} has no DTLS fingerprint")
        if not media.rtp.codecs:
            raise OfferError(f"{where} offers no codec")
        for candidate in media.ice_candidates:
            check_candidate(candidate, allowed)
    for group in session.group:
        if group.semantic == "BUNDLE":
            missing = [str(item) for item in group.items if str(item) not in mids]
            if missing or not group.items:
                raise OfferError(f"BUNDLE names sections that do not exist: {', '.join(missing) or '(none)'}")

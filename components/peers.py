"""What this stack knows about its partners: their stack outputs.

Partners exchange ids through stack references (or, across backends, through
values copied into config). Whether a resource that needs a partner's output
is declared must be decided *before* declaring resources, from known values:
creating resources inside ``apply()`` would hide them from previews. A
partner stack that exists but was never deployed has no outputs; everything
that needs them is left out with a log line, and the next `pulumi up` after
the partner deploys adds it.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.runtime.sync_await import _sync_await

from model.config import Settings
from model.peers import PEER_KEYS, PeerOutputs


def read_peers(settings: Settings) -> dict[str, PeerOutputs]:
    peers = {}
    for partner in settings.partners:
        if partner.stack:
            ref = pulumi.StackReference(f"{settings.org.name}-peer-{partner.name}", stack_name=partner.stack)
            values = {k: v for k, v in _known_outputs(ref).items() if k in PEER_KEYS and v is not None}
        else:
            values = dict(partner.outputs)
        if not values:
            pulumi.log.info(f"partner '{partner.name}' has no outputs yet "
                            f"({partner.stack or 'partners[].outputs is empty'}); resources that need "
                            "them are left out until it deploys")
        peers[partner.name] = PeerOutputs(partner, values)
    return peers


def _known_outputs(ref: pulumi.StackReference) -> dict[str, Any]:
    # The Python SDK has no synchronous stack-output read; invokes use this same
    # helper to block until a value is known. Stack references resolve during
    # previews too, so the set of declared resources is the same in preview and up.
    # One read of the whole outputs map (secret values included, as get_output_details
    # gives them), not one per key: a stack with nine partners read them 200 times.
    async def read() -> dict[str, Any]:
        if not await ref.outputs.is_known():
            return {}
        return dict(await ref.outputs.future() or {})

    return _sync_await(read())

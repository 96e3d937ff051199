"""Which presentation contexts an association accepts: intake's rule, not pynetdicom's list.

pynetdicom's unrestricted storage accepts private and unknown SOP classes but refuses
every standard one outside its own storage list, so Color Palette, Hanging Protocol,
the implant templates, Defined Procedure Protocol, Protocol Approval and Inventory were
refused at association while ``xnatd import`` stored the same files (issue 16). Here a
proposed context is accepted when ``intake.acceptance.sop_class_problem`` says its SOP
class is stored, in the first transfer syntax proposed (files are kept as sent); any
other context (Verification) is negotiated as pynetdicom does. ``scp/hooks.py`` installs it.
"""

from __future__ import annotations

from typing import Any

from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import SCP_SCU_ROLES, PresentationContext, negotiate_as_acceptor

from xnatd.intake.acceptance import sop_class_problem


def negotiate(
    requested: list[PresentationContext],
    supported: list[PresentationContext],
    roles: dict | None = None,
) -> tuple[list[PresentationContext], list[Any]]:
    """As pynetdicom's ``negotiate_unrestricted``, with xnatd's rule for storage."""
    roles = roles or {}
    storage, other = [], []
    for context in requested:
        if context.transfer_syntax and sop_class_problem(str(context.abstract_syntax)) is None:
            storage.append(context)
        else:
            other.append(context)
    accepted, reply_roles = negotiate_as_acceptor(other, supported, roles)
    replied = {role.sop_class_uid for role in reply_roles}
    for proposed in storage:
        context = PresentationContext()
        context.context_id = proposed.context_id
        context.abstract_syntax = proposed.abstract_syntax
        context.transfer_syntax = [proposed.transfer_syntax[0]]
        context.result = 0x00
        context._as_scu, context._as_scp = True, True
        wanted = roles.get(proposed.abstract_syntax)
        if wanted is not None:  # SCP/SCU role selection, answered as pynetdicom does
            outcome = SCP_SCU_ROLES[wanted][(True, True)]
            context._as_scu, context._as_scp = outcome[2], outcome[3]
            if proposed.abstract_syntax not in replied:
                role = SCP_SCU_RoleSelectionNegotiation()
                role.sop_class_uid = proposed.abstract_syntax
                role.scu_role, role.scp_role = bool(wanted[0]), bool(wanted[1])
                reply_roles.append(role)
                replied.add(proposed.abstract_syntax)
        accepted.append(context)
    accepted.sort(key=lambda context: context.context_id or 0)
    return accepted, reply_roles

"""The support desk's tools: customer records, email, refunds and file deletion.

They act on an in-memory desk so the demo runs offline; each is governed with
:func:`agentfence.govern` so policies can speak of kinds of action and of resources.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import tool

from agentfence.tools import Resource, govern

CUSTOMERS: dict[str, dict[str, Any]] = {
    "c-102": {"name": "Dana Whitfield", "email": "dana@customer.example", "tier": "gold"},
    "c-233": {"name": "Ravi Menon", "email": "ravi@customer.example", "tier": "standard"},
}


@tool
def lookup_customer(customer_id: str) -> dict[str, Any]:
    """Look up a customer record by id (for example "c-102")."""
    record = CUSTOMERS.get(customer_id)
    if record is None:
        return {"error": f"no customer {customer_id}"}
    return {"customer_id": customer_id, **record}


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email to one recipient."""
    return f"sent {subject!r} to {to}"


@tool
def refund(customer_id: str, amount: float, reason: str) -> str:
    """Refund an amount (in euros) to a customer's original payment method."""
    return f"refunded EUR {amount:.2f} to {customer_id}"


@tool
def delete_file(path: str) -> str:
    """Delete a file or directory on the support file share."""
    return f"deleted {path}"


govern(lookup_customer, groups=["read"], resource=Resource("Customer", arg="customer_id"))
govern(send_email, groups=["external_send"], resource=Resource("Recipient", arg="to"))
govern(refund, groups=["payments"], resource=Resource("Customer", arg="customer_id"))
govern(delete_file, groups=["destructive"], resource=Resource("File", arg="path"))

TOOLS = [lookup_customer, send_email, refund, delete_file]
"""The desk's tools, in the order the demo lists them."""

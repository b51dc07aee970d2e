"""The content of synthetic forms: form types, their labelled fields, plausible values and one question each.

Values inside one form are consistent (total = subtotal + tax, due date after invoice date), so a reader who
cross-checks the form is never confused by it. Everything here is text; `documents.py` draws it.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from casa_eval.data.synthetic.spec import MAX_FIELDS

_FIRST = ["Maria", "James", "Aiko", "Lars", "Priya", "Omar", "Elena", "Chen", "Fatima", "Diego", "Sofia", "Tomas"]
_LAST = ["Lopez", "Becker", "Tanaka", "Nilsen", "Sharma", "Haddad", "Petrova", "Okafor", "Alvarez", "Rossi", "Novak"]
_COMPANY_SUFFIX = ["& Co", "Ltd", "GmbH", "Inc.", "Traders", "Logistics", "Supplies", "Holdings", "& Sons", "Group"]
_CITIES = ["Rotterdam", "Lyon", "Osaka", "Porto", "Nairobi", "Leeds", "Gdansk", "Austin", "Bergen", "Valencia"]
_STREETS = ["Harbour Road", "Mill Lane", "King Street", "Station Avenue", "Canal Way", "Market Square"]
_CARRIERS = ["Rail freight", "Air cargo", "Road haulage", "Sea freight", "Express courier", "Standard post"]
_TERMS = ["Net 30", "Net 60", "Net 15", "Due on receipt", "2/10 Net 30"]
_DEPARTMENTS = ["Logistics", "Finance", "Marketing", "Research", "Facilities", "Sales", "Procurement"]
_DOMAINS = ["northwind", "brightwater", "keller-group", "bluefin", "aster", "ironbark", "meridian"]
_ITEMS = [
    "Steel brackets",
    "Packing tape",
    "Office chairs",
    "Printer paper",
    "Cable ties",
    "Safety gloves",
    "LED panels",
    "Pallet wrap",
    "Desk lamps",
    "Toner cartridge",
    "Hinges (box)",
    "Label rolls",
]
# Boilerplate for the notes block: no names, dates, places or numbers, so it can never answer a question.
_NOTES = [
    "Please quote the reference on all correspondence.",
    "Goods remain the property of the seller until paid in full.",
    "Report damaged or missing items within two working days.",
    "Prices include packaging but exclude insurance.",
    "Keep a copy of this form for your records.",
    "Late payments may incur an administrative fee.",
    "Attach original receipts to every claim line.",
    "Fragile items must be packed upright and labelled.",
]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass(frozen=True)
class FormField:
    """One labelled value on a form and the question that asks for it."""

    label: str
    value: str
    question: str


@dataclass(frozen=True)
class LineItem:
    description: str
    quantity: int
    unit_price: str
    amount: str


@dataclass(frozen=True)
class FormContent:
    """Everything a form shows; `fields` is the full candidate list in reading order (the renderer draws a
    prefix-preserving subset of them)."""

    form_type: str
    title: str
    issuer: str
    issuer_address: str
    fields: list[FormField]
    items: list[LineItem]
    footer: str
    notes: list[str]


def money(cents: int) -> str:
    """`128450` -> `"1,284.50"`."""
    return f"{cents // 100:,}.{cents % 100:02d}"


def answer_variants(value: str) -> list[str]:
    """The exact value first, then forms a reader may reasonably write instead (no thousands separator,
    no unit); ANLS keeps the best match over all of them."""
    variants = [value]
    if "," in value and value.replace(",", "").replace(".", "").isdigit():
        variants.append(value.replace(",", ""))
    if value.endswith(" kg"):
        variants.append(value.removesuffix(" kg"))
    return variants


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _company(rng: random.Random) -> str:
    return f"{rng.choice(_LAST)} {rng.choice(_COMPANY_SUFFIX)}"


def _date(rng: random.Random) -> dt.date:
    return dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(7 * 365))


def _text_date(day: dt.date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _phone(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"({rng.randint(200, 989)}) {rng.randint(200, 989)}-{rng.randint(1000, 9999)}"
    country, area = rng.choice([31, 33, 44, 49, 81]), rng.randint(10, 99)
    return f"+{country} {area} {rng.randint(1000, 9999)} {rng.randint(100, 999)}"


def _code(rng: random.Random, prefix: str | None = None, digits: int = 4) -> str:
    head = prefix or "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
    return f"{head}-{rng.randrange(10 ** (digits - 1), 10**digits)}"


def _common_fields(rng: random.Random, customer: str) -> list[FormField]:
    contact = _person(rng)
    first, last = contact.lower().split()
    email = f"{first[0]}.{last}@{rng.choice(_DOMAINS)}.com"
    return [
        FormField("Customer", customer, "What is the customer name?"),
        FormField("Contact", contact, "Who is the contact person?"),
        FormField("Phone", _phone(rng), "What is the phone number?"),
        FormField("Email", email, "What is the email address?"),
        FormField("Customer city", rng.choice(_CITIES), "What is the customer's city?"),
        FormField("Reference", _code(rng), "What is the reference number?"),
    ]


def _items(rng: random.Random) -> list[LineItem]:
    items = []
    for description in rng.sample(_ITEMS, rng.randint(2, 4)):
        quantity, unit = rng.randint(1, 40), rng.randint(150, 25_000)
        items.append(LineItem(description, quantity, money(unit), money(quantity * unit)))
    return items


def _invoice(rng: random.Random, customer: str) -> tuple[str, list[FormField], list[LineItem]]:
    items = _items(rng)
    subtotal = sum(int(item.amount.replace(",", "").replace(".", "")) for item in items)
    tax = subtotal * rng.choice([5, 8, 10, 19, 20, 21]) // 100
    issued = _date(rng)
    own = [
        FormField("Invoice date", issued.isoformat(), "What is the invoice date?"),
        FormField(
            "Due date", (issued + dt.timedelta(days=rng.choice([15, 30, 45, 60]))).isoformat(), "What is the due date?"
        ),
        FormField(
            "Account no.",
            f"{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}-{rng.randint(10, 99)}",
            "What is the account number?",
        ),
        FormField("Payment terms", rng.choice(_TERMS), "What are the payment terms?"),
        FormField("Subtotal", money(subtotal), "What is the subtotal?"),
        FormField("Tax", money(tax), "What is the tax amount?"),
        FormField("Total", money(subtotal + tax), "What is the total amount?"),
    ]
    return f"INVOICE #{rng.randint(10000, 99999)}", own, items


def _purchase_order(rng: random.Random, customer: str) -> tuple[str, list[FormField], list[LineItem]]:
    items = _items(rng)
    total = sum(int(item.amount.replace(",", "").replace(".", "")) for item in items)
    ordered = _date(rng)
    own = [
        FormField("Order no.", _code(rng, "PO", 5), "What is the order number?"),
        FormField("Order date", _text_date(ordered), "What is the order date?"),
        FormField(
            "Delivery date", _text_date(ordered + dt.timedelta(days=rng.randint(3, 40))), "What is the delivery date?"
        ),
        FormField("Supplier", _company(rng), "Who is the supplier?"),
        FormField("Payment terms", rng.choice(_TERMS), "What are the payment terms?"),
        FormField("Total", money(total), "What is the total amount?"),
    ]
    return "PURCHASE ORDER", own, items


def _shipping(rng: random.Random, customer: str) -> tuple[str, list[FormField], list[LineItem]]:
    own = [
        FormField("Ship date", _date(rng).isoformat(), "What is the ship date?"),
        FormField("Carrier", rng.choice(_CARRIERS), "Which carrier is used?"),
        FormField("Tracking no.", f"TRK{rng.randrange(10**7, 10**8)}", "What is the tracking number?"),
        FormField("Destination", rng.choice(_CITIES), "What is the destination?"),
        FormField("Weight", f"{rng.randint(1, 400)}.{rng.randint(0, 9)} kg", "What is the shipment weight?"),
        FormField("Packages", str(rng.randint(1, 24)), "How many packages are there?"),
    ]
    return "SHIPPING FORM", own, []


def _expense(rng: random.Random, customer: str) -> tuple[str, list[FormField], list[LineItem]]:
    start = _date(rng)
    own = [
        FormField("Employee", _person(rng), "What is the employee's name?"),
        FormField("Employee ID", _code(rng, "E", 5), "What is the employee ID?"),
        FormField("Department", rng.choice(_DEPARTMENTS), "Which department is named?"),
        FormField("Period", f"{_MONTHS[start.month - 1]} {start.year}", "What period does the report cover?"),
        FormField("Amount claimed", money(rng.randint(1_500, 450_000)), "What is the amount claimed?"),
        FormField("Approved by", _person(rng), "Who approved the report?"),
    ]
    return "EXPENSE REPORT", own, []


_FORM_TYPES = {"invoice": _invoice, "purchase_order": _purchase_order, "shipping": _shipping, "expense": _expense}


def make_form(rng: random.Random) -> FormContent:
    """A random form of a random type with at least `MAX_FIELDS` candidate fields, each label distinct."""
    form_type = rng.choice(sorted(_FORM_TYPES))
    issuer, customer = _company(rng), _company(rng)
    while customer.split()[0] == issuer.split()[0]:  # issuer and customer must not be mistaken for each other
        customer = _company(rng)
    title, own, items = _FORM_TYPES[form_type](rng, customer)
    # The form's own fields first (they define it), then the contact block; the renderer keeps this order.
    fields = own + _common_fields(rng, customer)
    labels = [f.label for f in fields]
    if len(fields) < MAX_FIELDS or len(set(labels)) != len(labels):
        raise AssertionError(f"form type {form_type} offers too few or duplicate fields: {labels}")
    # No city in the address: "Customer city" and "Destination" must be the only cities a question can mean.
    address = f"{rng.randint(1, 220)} {rng.choice(_STREETS)}, Unit {rng.randint(1, 40)}"
    footer = f"Form {_code(rng, rng.choice(['SF', 'AC', 'OP']), 3)} rev. {rng.randint(2015, 2024)}"
    notes = rng.sample(_NOTES, rng.randint(1, 3))
    return FormContent(form_type, title, issuer, address, fields, items, footer, notes)

"""The data both realistic apps render: a catalogue page of 20 items with a total.

Shared by the Flask app and the Django site (each imports it from its own folder via
a copy-free path: both apps put this folder on sys.path), so both do the same work.
"""

ITEMS = [
    {"id": n, "name": f"Item {n}", "price_cents": 199 + 37 * n, "tags": ["new", "sale"][: n % 3]}
    for n in range(1, 21)
]


def page(query: str = "") -> dict:
    """The template context: the items matching ``query`` and the total of their prices."""
    chosen = [i for i in ITEMS if query.lower() in i["name"].lower()]
    return {"items": chosen, "count": len(chosen),
            "total": f"{sum(i['price_cents'] for i in chosen) / 100:.2f}", "query": query}

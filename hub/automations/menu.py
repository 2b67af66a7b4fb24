"""The breakfast menu: a dish that meets every one of a guest's dietary needs."""

from __future__ import annotations

from collections.abc import Iterable

# (dish, the dietary needs it meets: hub.schemas.Dietary's words); the first dish that
# meets every need is suggested.
_VEGGIE = frozenset({"vegetarian", "pescatarian"})
BREAKFASTS: tuple[tuple[str, frozenset[str]], ...] = (
    ("scrambled eggs on sourdough with a fruit salad", _VEGGIE | {"nut_allergy"}),
    ("Greek yogurt with berries, honey and granola", _VEGGIE),
    ("a veggie omelette with roast tomatoes",
     _VEGGIE | {"gluten_free", "nut_allergy", "halal", "kosher"}),
    ("smoked salmon and avocado on rye",
     frozenset({"pescatarian", "lactose_free", "nut_allergy"})),
    ("a tofu scramble with spinach and potatoes",
     _VEGGIE | {"vegan", "lactose_free", "gluten_free", "nut_allergy", "halal", "kosher"}),
)
# Meets every diet we know of: what a kitchen can always offer.
PLAIN_BREAKFAST = "a fresh fruit plate"


def breakfast_for(dietary: Iterable[str]) -> str:
    """A breakfast that meets every one of the guest's dietary needs ("gluten-free" and
    "gluten_free" are one need)."""
    needs = {d.strip().lower().replace("-", "_").replace(" ", "_") for d in dietary
             if isinstance(d, str)} - {""}
    for dish, meets in BREAKFASTS:
        if needs <= meets:
            return dish
    return PLAIN_BREAKFAST


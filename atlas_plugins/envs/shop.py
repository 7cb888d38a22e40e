"""Shop server: a product catalogue with seeded inventory, a cart, coupons, checkout, orders and returns."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from ._base import (
    TODAY,
    Context,
    EnvError,
    EnvServer,
    EpisodeStore,
    arg,
    lookup,
    main,
    money,
    new_server,
    one_of,
    rng_for,
)

# (sku, name, category, brand, price USD, description)
CATALOG: list[tuple[str, str, str, str, float, str]] = [
    (
        "SKU-1001",
        "Wireless Noise-Cancelling Headphones",
        "electronics",
        "Sonora",
        199.99,
        "Over-ear, 30 h battery, USB-C",
    ),
    ("SKU-1002", "USB-C Charger 65W", "electronics", "VoltEdge", 39.99, "GaN charger with two USB-C ports"),
    ("SKU-1003", "Bluetooth Speaker Mini", "electronics", "Sonora", 49.99, "Waterproof IPX7 pocket speaker"),
    ("SKU-1004", "4K Webcam", "electronics", "Clarity", 89.99, "Auto-focus webcam with dual microphones"),
    ("SKU-1005", "Mechanical Keyboard", "electronics", "Keyforge", 129.00, "Hot-swappable switches, RGB backlight"),
    ("SKU-1006", "Wireless Mouse", "electronics", "Keyforge", 29.99, "Silent clicks, 18-month battery"),
    ("SKU-2001", "Stainless Steel Water Bottle", "sports", "Trailhead", 24.95, "1 litre, keeps drinks cold 24 h"),
    ("SKU-2002", "Yoga Mat", "sports", "Lotus", 34.50, "6 mm non-slip mat with strap"),
    ("SKU-2003", "Adjustable Dumbbells (pair)", "sports", "IronCore", 149.00, "2-24 kg per dumbbell"),
    ("SKU-2004", "Running Socks (3-pack)", "sports", "Trailhead", 14.99, "Cushioned merino blend"),
    ("SKU-3001", "Chef's Knife 8-inch", "kitchen", "Hanzo", 79.00, "High-carbon steel, full tang"),
    ("SKU-3002", "Cast Iron Skillet 12-inch", "kitchen", "Forge & Hearth", 44.99, "Pre-seasoned, oven safe"),
    ("SKU-3003", "Pour-Over Coffee Set", "kitchen", "Morning Ritual", 38.00, "Glass dripper, filters and kettle"),
    ("SKU-3004", "Digital Kitchen Scale", "kitchen", "Measura", 19.99, "0.1 g precision, 5 kg capacity"),
    ("SKU-3005", "Silicone Spatula Set", "kitchen", "Measura", 12.49, "Heat resistant, set of 4"),
    ("SKU-4001", "Desk Lamp LED", "home", "Lumen", 45.00, "Dimmable with USB charging port"),
    ("SKU-4002", "Linen Duvet Cover (Queen)", "home", "Nest", 89.00, "Stone-washed linen, oat colour"),
    ("SKU-4003", "Scented Candle Trio", "home", "Nest", 27.00, "Cedar, fig and sea salt"),
    ("SKU-4004", "Indoor Plant Pot Set", "home", "Verdant", 32.00, "Three ceramic pots with saucers"),
    ("SKU-5001", "Hardcover Notebook A5", "office", "Quill", 16.00, "Dotted pages, lay-flat binding"),
    ("SKU-5002", "Gel Pens (12-pack)", "office", "Quill", 9.99, "0.5 mm, assorted colours"),
    ("SKU-5003", "Ergonomic Office Chair", "office", "Postura", 329.00, "Lumbar support, mesh back"),
    ("SKU-5004", "Monitor Stand", "office", "Postura", 54.99, "Bamboo riser with drawer"),
    ("SKU-6001", "The Pragmatic Planner", "books", "Northwind Press", 22.00, "Productivity guide, hardcover"),
    ("SKU-6002", "Cooking for Two", "books", "Northwind Press", 28.50, "120 recipes, paperback"),
    ("SKU-6003", "A Brief History of Maps", "books", "Atlas House", 18.75, "Illustrated, paperback"),
    ("SKU-7001", "Rain Jacket", "clothing", "Trailhead", 119.00, "Waterproof breathable shell"),
    ("SKU-7002", "Merino T-Shirt", "clothing", "Trailhead", 59.00, "Odor resistant, lightweight"),
    ("SKU-7003", "Wool Beanie", "clothing", "Lotus", 21.00, "Ribbed knit, one size"),
]
CATEGORIES = sorted({c[2] for c in CATALOG})
SHIPPING = {"standard": (5.99, 5), "express": (14.99, 2), "overnight": (29.99, 1)}
FREE_SHIPPING_OVER = 50.0
TAX_RATE = 0.08
COUPONS: dict[str, dict[str, Any]] = {
    "SAVE10": {"kind": "percent", "value": 10, "min_subtotal": 0, "expires": "2026-12-31"},
    "WELCOME5": {"kind": "amount", "value": 5, "min_subtotal": 25, "expires": "2026-12-31"},
    "FREESHIP": {"kind": "shipping", "value": 0, "min_subtotal": 0, "expires": "2026-06-30"},
    "SPRING20": {"kind": "percent", "value": 20, "min_subtotal": 0, "expires": "2026-02-28"},
}
ORDER_STATUSES = ["processing", "shipped", "delivered", "cancelled", "returned"]

SkuArg = Annotated[str, arg("Product SKU, e.g. 'SKU-1003' (from search or list_items).")]
OrderArg = Annotated[str, arg("Order id, e.g. 'ORD-1001' (from list_orders or checkout).")]


@dataclass
class ShopState:
    products: dict[str, dict[str, Any]]
    orders: dict[str, dict[str, Any]]
    cart: dict[str, int] = field(default_factory=dict)
    coupon: str | None = None
    next_order: int = 1001
    next_return: int = 1


def initial_state(seed: int, episode: str = "default") -> ShopState:
    rng = rng_for("shop", seed)
    products = {}
    for sku, name, cat, brand, price, desc in CATALOG:
        stock = rng.choice([0, 2, 5, 8, 12, 20, 35, 50]) if rng.random() > 0.1 else 0
        products[sku] = {
            "sku": sku,
            "name": name,
            "category": cat,
            "brand": brand,
            "price": price,
            "description": desc,
            "rating": round(rng.uniform(3.4, 4.9), 1),
            "reviews": rng.randint(3, 900),
            "stock": stock,
        }
    st = ShopState(products=products, orders={})
    for days_ago, status in ((10, "delivered"), (2, "shipped")):
        picks = rng.sample(CATALOG, 2 if status == "delivered" else 1)
        items: list[dict[str, Any]] = [{"sku": p[0], "name": p[1], "quantity": 1, "unit_price": p[4]} for p in picks]
        oid = f"ORD-{st.next_order}"
        st.next_order += 1
        placed = TODAY - timedelta(days=days_ago)
        st.orders[oid] = _order_record(
            oid,
            items,
            0.0,
            SHIPPING["standard"][0] if sum(i["unit_price"] for i in items) < FREE_SHIPPING_OVER else 0.0,
            "standard",
            "12 Oak St, Springfield",
            placed.isoformat(),
            None,
        )
        st.orders[oid]["status"] = status
        st.orders[oid]["tracking_number"] = f"1Z{rng.randint(10**9, 10**10 - 1)}"
    return st


def _order_record(
    oid: str,
    items: list[dict[str, Any]],
    discount: float,
    shipping: float,
    method: str,
    address: str,
    placed: str,
    coupon: str | None,
) -> dict[str, Any]:
    subtotal = money(sum(i["unit_price"] * i["quantity"] for i in items))
    tax = money((subtotal - discount) * TAX_RATE)
    eta = (TODAY.fromisoformat(placed) + timedelta(days=SHIPPING[method][1])).isoformat()
    return {
        "order_id": oid,
        "status": "processing",
        "placed_on": placed,
        "items": items,
        "subtotal": subtotal,
        "discount": money(discount),
        "shipping": money(shipping),
        "tax": tax,
        "total": money(subtotal - discount + shipping + tax),
        "shipping_method": method,
        "shipping_address": address,
        "estimated_delivery": eta,
        "coupon": coupon,
        "tracking_number": None,
        "returns": [],
    }


def _card(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p[k] for k in ("sku", "name", "category", "price", "rating", "stock")}


def build(seed: int = 0) -> EnvServer:
    srv = new_server(
        "shop", "Online store: browse and search products, manage a cart, check out, track and return orders."
    )
    store: EpisodeStore[ShopState] = EpisodeStore(initial_state, seed)

    def quote(st: ShopState, method: str = "standard") -> dict[str, Any]:
        lines: list[dict[str, Any]] = [
            {
                "sku": s,
                "name": st.products[s]["name"],
                "quantity": q,
                "unit_price": st.products[s]["price"],
                "line_total": money(st.products[s]["price"] * q),
            }
            for s, q in st.cart.items()
        ]
        subtotal = money(sum(line["line_total"] for line in lines))
        discount, ship = 0.0, SHIPPING[method][0] if lines else 0.0
        if method == "standard" and subtotal >= FREE_SHIPPING_OVER:
            ship = 0.0
        c = COUPONS.get(st.coupon or "")
        if c and subtotal >= c["min_subtotal"]:
            if c["kind"] == "percent":
                discount = subtotal * c["value"] / 100
            elif c["kind"] == "amount":
                discount = min(subtotal, c["value"])
            else:
                ship = 0.0
        tax = money((subtotal - discount) * TAX_RATE)
        return {
            "items": lines,
            "subtotal": subtotal,
            "coupon": st.coupon,
            "discount": money(discount),
            "shipping_method": method,
            "shipping": money(ship),
            "tax": tax,
            "total": money(subtotal - discount + ship + tax),
        }

    @srv.tool()
    async def list_categories(ctx: Context) -> dict:
        """List product categories with the number of products in each."""
        st = store.get(ctx)
        return {
            "categories": [
                {"name": c, "products": sum(p["category"] == c for p in st.products.values())} for c in CATEGORIES
            ]
        }

    @srv.tool()
    async def list_items(
        ctx: Context,
        category: Annotated[str | None, arg(f"Only this category: {', '.join(CATEGORIES)}.")] = None,
        in_stock_only: Annotated[bool, arg("Hide products with zero stock.")] = False,
        sort_by: Annotated[str, arg("Sort order: 'price', 'price_desc', 'rating' or 'name'.")] = "name",
        limit: Annotated[int, arg("Maximum products to return.", ge=1, le=100)] = 50,
    ) -> dict:
        """Browse the catalogue, optionally one category, sorted by price, rating or name."""
        st = store.get(ctx)
        cat = one_of(category, CATEGORIES, "category") if category else None
        order = one_of(sort_by, ["price", "price_desc", "rating", "name"], "sort_by")
        ps = [
            p
            for p in st.products.values()
            if (cat is None or p["category"] == cat) and (p["stock"] > 0 or not in_stock_only)
        ]
        key = {
            "price": lambda p: (p["price"], p["sku"]),
            "price_desc": lambda p: (-p["price"], p["sku"]),
            "rating": lambda p: (-p["rating"], p["sku"]),
            "name": lambda p: (p["name"], p["sku"]),
        }[order]
        ps.sort(key=key)
        return {"total": len(ps), "products": [_card(p) for p in ps[:limit]]}

    @srv.tool()
    async def search(
        query: Annotated[str, arg("Words to match in product name, brand, category or description.", min_length=1)],
        ctx: Context,
        max_price: Annotated[float | None, arg("Only products at or below this price (USD).", gt=0)] = None,
        category: Annotated[str | None, arg("Only this category.")] = None,
        limit: Annotated[int, arg("Maximum results.", ge=1, le=100)] = 10,
    ) -> dict:
        """Search products by keywords; every word must match. Results ordered by rating."""
        st = store.get(ctx)
        cat = one_of(category, CATEGORIES, "category") if category else None
        words = query.lower().split()
        hits = [
            p
            for p in st.products.values()
            if all(w in f"{p['name']} {p['brand']} {p['category']} {p['description']}".lower() for w in words)
            and (max_price is None or p["price"] <= max_price)
            and (cat is None or p["category"] == cat)
        ]
        hits.sort(key=lambda p: (-p["rating"], p["sku"]))
        return {"query": query, "total": len(hits), "products": [_card(p) for p in hits[:limit]]}

    @srv.tool()
    async def get_details(sku: SkuArg, ctx: Context) -> dict:
        """Full product information: brand, description, price, rating, review count and stock."""
        return dict(lookup(store.get(ctx).products, sku, "sku"))

    @srv.tool()
    async def check_stock(sku: SkuArg, ctx: Context) -> dict:
        """How many units of a product are in stock (and how many are already in your cart)."""
        st = store.get(ctx)
        p = lookup(st.products, sku, "sku")
        return {
            "sku": p["sku"],
            "name": p["name"],
            "in_stock": p["stock"],
            "in_cart": st.cart.get(p["sku"], 0),
            "available": p["stock"] > 0,
        }

    @srv.tool()
    async def add_to_cart(
        sku: SkuArg,
        ctx: Context,
        quantity: Annotated[int, arg("Units to add.", ge=1, le=99)] = 1,
    ) -> dict:
        """Put a product in the shopping cart (fails if there is not enough stock)."""
        st = store.get(ctx)
        p = lookup(st.products, sku, "sku")
        want = st.cart.get(p["sku"], 0) + quantity
        if want > p["stock"]:
            raise EnvError(f"only {p['stock']} of {p['sku']} ({p['name']}) in stock; you asked for {want} in total")
        st.cart[p["sku"]] = want
        return {"added": p["sku"], "quantity_in_cart": want, "cart": quote(st)}

    @srv.tool()
    async def remove_from_cart(
        sku: SkuArg,
        ctx: Context,
        quantity: Annotated[int | None, arg("Units to remove; omit to remove the product entirely.", ge=1)] = None,
    ) -> dict:
        """Remove a product (or some units of it) from the cart."""
        st = store.get(ctx)
        p = lookup(st.products, sku, "sku")
        have = st.cart.get(p["sku"], 0)
        if not have:
            raise EnvError(f"{p['sku']} is not in the cart; cart holds: {', '.join(st.cart) or 'nothing'}")
        left = 0 if quantity is None else max(0, have - quantity)
        if left:
            st.cart[p["sku"]] = left
        else:
            del st.cart[p["sku"]]
        return {"removed": p["sku"], "quantity_in_cart": left, "cart": quote(st)}

    @srv.tool()
    async def view_cart(
        ctx: Context,
        shipping_method: Annotated[
            str, arg("Price the cart with this shipping method: standard, express or overnight.")
        ] = "standard",
    ) -> dict:
        """Show cart contents with subtotal, coupon discount, shipping, 8% tax and total."""
        return quote(store.get(ctx), one_of(shipping_method, list(SHIPPING), "shipping_method"))

    @srv.tool()
    async def apply_coupon(code: Annotated[str, arg("Coupon code, e.g. 'SAVE10'.")], ctx: Context) -> dict:
        """Apply a coupon code to the cart (one coupon at a time; a new one replaces the old)."""
        st = store.get(ctx)
        key = code.strip().upper()
        if key not in COUPONS:
            raise EnvError(f"coupon '{code}' does not exist")
        c = COUPONS[key]
        if c["expires"] < TODAY.isoformat():
            raise EnvError(f"coupon {key} expired on {c['expires']}")
        sub = quote(st)["subtotal"]
        if sub < c["min_subtotal"]:
            raise EnvError(
                f"coupon {key} needs a subtotal of at least ${c['min_subtotal']:.2f}; cart subtotal is ${sub:.2f}"
            )
        st.coupon = key
        return {"applied": key, "cart": quote(st)}

    @srv.tool()
    async def checkout(
        shipping_address: Annotated[str, arg("Full delivery address.", min_length=5, max_length=300)],
        ctx: Context,
        shipping_method: Annotated[
            str, arg("standard (5 days, free over $50), express (2 days) or overnight (1 day).")
        ] = "standard",
    ) -> dict:
        """Place an order for everything in the cart; stock is reserved and the cart is emptied."""
        st = store.get(ctx)
        method = one_of(shipping_method, list(SHIPPING), "shipping_method")
        if not st.cart:
            raise EnvError("the cart is empty; add products with add_to_cart first")
        for sku, q in st.cart.items():
            if st.products[sku]["stock"] < q:
                raise EnvError(f"{sku} now has only {st.products[sku]['stock']} in stock; reduce the quantity")
        quoted = quote(st, method)
        oid = f"ORD-{st.next_order}"
        st.next_order += 1
        items = [{k: line[k] for k in ("sku", "name", "quantity", "unit_price")} for line in quoted["items"]]
        order = _order_record(
            oid,
            items,
            quoted["discount"],
            quoted["shipping"],
            method,
            shipping_address.strip(),
            TODAY.isoformat(),
            st.coupon,
        )
        for sku, n in st.cart.items():
            st.products[sku]["stock"] -= n
        st.orders[oid] = order
        st.cart, st.coupon = {}, None
        return {"order": order}

    @srv.tool()
    async def list_orders(
        ctx: Context,
        status: Annotated[str | None, arg(f"Only orders with this status: {', '.join(ORDER_STATUSES)}.")] = None,
    ) -> dict:
        """List your orders, newest first, with status and total."""
        st = store.get(ctx)
        s = one_of(status, ORDER_STATUSES, "status") if status else None
        os_ = [o for o in st.orders.values() if s is None or o["status"] == s]
        os_.sort(key=lambda o: o["order_id"], reverse=True)
        return {
            "orders": [
                {k: o[k] for k in ("order_id", "status", "placed_on", "total", "estimated_delivery")}
                | {"items": len(o["items"])}
                for o in os_
            ]
        }

    @srv.tool()
    async def get_order(order_id: OrderArg, ctx: Context) -> dict:
        """Full details of one order: items, prices, address, status, tracking and returns."""
        return dict(lookup(store.get(ctx).orders, order_id, "order id"))

    @srv.tool()
    async def cancel_order(order_id: OrderArg, ctx: Context) -> dict:
        """Cancel an order that has not shipped yet; its items go back into stock."""
        st = store.get(ctx)
        o = lookup(st.orders, order_id, "order id")
        if o["status"] != "processing":
            raise EnvError(
                f"{o['order_id']} is '{o['status']}'; only 'processing' orders can be cancelled (use return_item after delivery)"
            )
        for it in o["items"]:
            st.products[it["sku"]]["stock"] += it["quantity"]
        o["status"] = "cancelled"
        return {"order_id": o["order_id"], "status": "cancelled", "refund": o["total"]}

    @srv.tool()
    async def return_item(
        order_id: OrderArg,
        sku: SkuArg,
        ctx: Context,
        quantity: Annotated[int, arg("Units to return.", ge=1)] = 1,
        reason: Annotated[
            str, arg("Why it is returned, e.g. 'damaged', 'wrong size', 'changed mind'.")
        ] = "changed mind",
    ) -> dict:
        """Return items from a delivered order within 30 days; refunds the item price plus its tax."""
        st = store.get(ctx)
        o = lookup(st.orders, order_id, "order id")
        if o["status"] not in ("delivered", "returned"):
            raise EnvError(f"{o['order_id']} is '{o['status']}'; only delivered orders can be returned")
        if (TODAY - TODAY.fromisoformat(o["placed_on"])).days > 30:
            raise EnvError(
                f"{o['order_id']} was placed on {o['placed_on']}, more than 30 days ago; the return window has closed"
            )
        item = next((i for i in o["items"] if i["sku"].lower() == sku.strip().lower()), None)
        if item is None:
            raise EnvError(f"{sku} is not in {o['order_id']}; its items: {', '.join(i['sku'] for i in o['items'])}")
        already = sum(r["quantity"] for r in o["returns"] if r["sku"] == item["sku"])
        if already + quantity > item["quantity"]:
            raise EnvError(f"you bought {item['quantity']} of {item['sku']} and already returned {already}")
        refund = money(item["unit_price"] * quantity * (1 + TAX_RATE))
        ret = {
            "return_id": f"RET-{st.next_return}",
            "sku": item["sku"],
            "quantity": quantity,
            "reason": reason,
            "refund": refund,
        }
        st.next_return += 1
        o["returns"].append(ret)
        st.products[item["sku"]]["stock"] += quantity
        if all(sum(r["quantity"] for r in o["returns"] if r["sku"] == i["sku"]) >= i["quantity"] for i in o["items"]):
            o["status"] = "returned"
        return {"order_id": o["order_id"], "return": ret, "order_status": o["status"]}

    @srv.tool()
    async def track_shipment(order_id: OrderArg, ctx: Context) -> dict:
        """Shipping status and tracking events of an order."""
        o = lookup(store.get(ctx).orders, order_id, "order id")
        placed = TODAY.fromisoformat(o["placed_on"])
        events = [{"date": placed.isoformat(), "event": "order placed"}]
        if o["status"] in ("shipped", "delivered", "returned"):
            events.append({"date": (placed + timedelta(days=1)).isoformat(), "event": "shipped from warehouse"})
        if o["status"] in ("delivered", "returned"):
            events.append({"date": o["estimated_delivery"], "event": "delivered"})
        if o["status"] == "cancelled":
            events.append({"date": TODAY.isoformat(), "event": "cancelled"})
        return {
            "order_id": o["order_id"],
            "status": o["status"],
            "tracking_number": o["tracking_number"],
            "estimated_delivery": o["estimated_delivery"],
            "events": events,
        }

    @srv.tool()
    async def restock_item(
        sku: SkuArg,
        quantity: Annotated[int, arg("Units received into the warehouse.", ge=1, le=10000)],
        ctx: Context,
    ) -> dict:
        """Inventory admin: add received units to a product's stock."""
        p = lookup(store.get(ctx).products, sku, "sku")
        p["stock"] += quantity
        return {"sku": p["sku"], "stock": p["stock"]}

    return srv


if __name__ == "__main__":
    main(build)

"""Bank server: a seeded ledger with checking, savings and a credit card; transfers, bills, cards."""

from dataclasses import dataclass, field
from datetime import date, timedelta
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
    parse_date,
    rng_for,
)

CATEGORIES = [
    "income",
    "rent",
    "groceries",
    "dining",
    "transport",
    "utilities",
    "entertainment",
    "shopping",
    "health",
    "travel",
    "transfer",
    "bills",
    "fees",
    "other",
]
MERCHANTS = {
    "groceries": ["FreshMart", "Green Grocer", "Corner Market"],
    "dining": ["Cafe Lumiere", "Osteria Rossa", "Noodle Bar"],
    "transport": ["Metro Transit", "RideNow", "Shell Station"],
    "entertainment": ["StreamFlix", "City Cinema", "Vinyl Vault"],
    "shopping": ["Northwind Store", "Quill & Co", "Trailhead Outfitters"],
    "health": ["CityCare Pharmacy", "Smile Dental"],
}
# Bank's own FX table (units per USD) with a 1% conversion fee on top.
FX = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "JPY": 149.5,
    "CAD": 1.36,
    "AUD": 1.53,
    "CHF": 0.88,
    "MXN": 17.1,
    "INR": 83.1,
}
FX_FEE = 0.01

AccountArg = Annotated[str, arg("Account id: 'ACC-1001' (checking), 'ACC-1002' (savings) or 'ACC-1003' (credit card).")]
Amount = Annotated[float, arg("Amount in USD, greater than 0 (cents allowed).", gt=0, le=1_000_000)]


@dataclass
class BankState:
    accounts: dict[str, dict[str, Any]]
    transactions: list[dict[str, Any]]
    payees: dict[str, dict[str, Any]]
    cards: dict[str, dict[str, Any]]
    scheduled: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_tx: int = 1
    next_payee: int = 1
    next_sched: int = 1

    def post(self, account: str, amount: float, description: str, category: str, day: date = TODAY) -> dict[str, Any]:
        tx = {
            "id": f"T{self.next_tx:04d}",
            "account_id": account,
            "date": day.isoformat(),
            "amount": money(amount),
            "description": description,
            "category": category,
        }
        self.next_tx += 1
        self.transactions.append(tx)
        self.accounts[account]["balance"] = money(self.accounts[account]["balance"] + amount)
        return tx


def initial_state(seed: int, episode: str = "default") -> BankState:
    rng = rng_for("bank", seed)
    st = BankState(
        accounts={
            "ACC-1001": {
                "id": "ACC-1001",
                "name": "Everyday Checking",
                "type": "checking",
                "number": "****4821",
                "balance": money(rng.uniform(1500, 3500)),
                "currency": "USD",
                "interest_rate": 0.0,
            },
            "ACC-1002": {
                "id": "ACC-1002",
                "name": "High-Yield Savings",
                "type": "savings",
                "number": "****7390",
                "balance": money(rng.uniform(8000, 25000)),
                "currency": "USD",
                "interest_rate": 4.1,
            },
            "ACC-1003": {
                "id": "ACC-1003",
                "name": "Rewards Credit Card",
                "type": "credit",
                "number": "****1156",
                "balance": 0.0,
                "currency": "USD",
                "interest_rate": 21.9,
                "credit_limit": 5000.0,
            },
        },
        transactions=[],
        payees={},
        cards={
            "CARD-1": {"id": "CARD-1", "type": "debit", "account_id": "ACC-1001", "last4": "4821", "frozen": False},
            "CARD-2": {"id": "CARD-2", "type": "credit", "account_id": "ACC-1003", "last4": "1156", "frozen": False},
        },
    )
    for name, cat, num in (
        ("City Power & Light", "utilities", "EL-55120"),
        ("Springfield Water", "utilities", "WA-20931"),
        ("Oakwood Apartments", "rent", "RENT-12B"),
        ("FiberNet Internet", "bills", "FN-88410"),
    ):
        pid = f"P{st.next_payee}"
        st.next_payee += 1
        st.payees[pid] = {"id": pid, "name": name, "category": cat, "account_number": num}
    # February history, then March 1-2. Opening balances (Jan 31) are chosen so that today's
    # balances of checking and savings equal the drawn targets; the card starts at 0.
    target = {k: a["balance"] for k, a in st.accounts.items()}
    for a in st.accounts.values():
        a["balance"] = 0.0
    start = date(2026, 2, 1)
    events: list[tuple[date, str, float, str, str]] = [
        (date(2026, 2, 1), "ACC-1001", -1850.0, "Oakwood Apartments rent", "rent"),
        (date(2026, 2, 13), "ACC-1001", 3120.55, "Payroll deposit - Northwind Traders", "income"),
        (date(2026, 2, 27), "ACC-1001", 3120.55, "Payroll deposit - Northwind Traders", "income"),
        (date(2026, 2, 28), "ACC-1002", money(target["ACC-1002"] * 0.041 / 12), "Interest payment", "income"),
        (date(2026, 3, 1), "ACC-1001", -1850.0, "Oakwood Apartments rent", "rent"),
        (date(2026, 2, 10), "ACC-1001", -money(rng.uniform(70, 140)), "City Power & Light", "utilities"),
        (date(2026, 2, 15), "ACC-1001", -65.0, "FiberNet Internet", "bills"),
        (date(2026, 2, 20), "ACC-1001", -500.0, "Transfer to savings", "transfer"),
        (date(2026, 2, 20), "ACC-1002", 500.0, "Transfer from checking", "transfer"),
    ]
    for _ in range(26):
        cat = rng.choice(list(MERCHANTS))
        day = start + timedelta(days=rng.randint(0, 29))
        lo, hi = {
            "groceries": (25, 160),
            "dining": (12, 95),
            "transport": (3, 60),
            "entertainment": (8, 45),
            "shopping": (15, 220),
            "health": (10, 180),
        }[cat]
        acct = "ACC-1003" if rng.random() < 0.6 else "ACC-1001"
        events.append((day, acct, -money(rng.uniform(lo, hi)), rng.choice(MERCHANTS[cat]), cat))
    events.sort(key=lambda e: (e[0], e[1], e[3], e[2]))
    for k in ("ACC-1001", "ACC-1002"):
        flow = sum(e[2] for e in events if e[1] == k)
        st.post(k, target[k] - flow, "Opening balance", "other", date(2026, 1, 31))
    for day, acct, amt, desc, cat in events:
        st.post(acct, amt, desc, cat, day)
    return st


def build(seed: int = 0) -> EnvServer:
    srv = new_server(
        "bank", "Personal banking: accounts, transactions, transfers, bill payments, cards, spending insights."
    )
    store: EpisodeStore[BankState] = EpisodeStore(initial_state, seed)

    def account(st: BankState, account_id: str) -> dict[str, Any]:
        return lookup(st.accounts, account_id.strip().upper(), "account id")

    def available(a: dict[str, Any]) -> float:
        return money(a["credit_limit"] + a["balance"]) if a["type"] == "credit" else a["balance"]

    def debit(st: BankState, a: dict[str, Any], amount: float) -> None:
        if a["type"] == "savings" and amount > a["balance"]:
            raise EnvError(f"insufficient funds in {a['id']}: balance ${a['balance']:.2f}, needed ${amount:.2f}")
        if a["type"] == "checking" and amount > a["balance"]:
            raise EnvError(
                f"insufficient funds in {a['id']}: balance ${a['balance']:.2f}, needed ${amount:.2f}; "
                "transfer from savings (ACC-1002) first"
            )
        if a["type"] == "credit" and amount > available(a):
            raise EnvError(f"credit limit exceeded on {a['id']}: available ${available(a):.2f}, needed ${amount:.2f}")

    @srv.tool()
    async def list_accounts(ctx: Context) -> dict:
        """List accounts with type, masked number and current balance (credit card balance is negative when owed)."""
        st = store.get(ctx)
        return {
            "accounts": [{k: a[k] for k in ("id", "name", "type", "number", "balance")} for a in st.accounts.values()]
        }

    @srv.tool()
    async def get_balance(account_id: AccountArg, ctx: Context) -> dict:
        """Current and available balance of one account."""
        a = account(store.get(ctx), account_id)
        return {"account_id": a["id"], "balance": a["balance"], "available": available(a), "currency": a["currency"]}

    @srv.tool()
    async def get_details(account_id: AccountArg, ctx: Context) -> dict:
        """Account details: name, type, masked number, interest rate, credit limit, linked cards."""
        st = store.get(ctx)
        a = account(st, account_id)
        return dict(a) | {
            "available": available(a),
            "cards": [c["id"] for c in st.cards.values() if c["account_id"] == a["id"]],
        }

    @srv.tool()
    async def list_transactions(
        account_id: AccountArg,
        ctx: Context,
        date_from: Annotated[str | None, arg("First date to include, YYYY-MM-DD.")] = None,
        date_to: Annotated[str | None, arg("Last date to include, YYYY-MM-DD.")] = None,
        category: Annotated[str | None, arg(f"Only this category: {', '.join(CATEGORIES)}.")] = None,
        limit: Annotated[int, arg("Maximum transactions (newest first).", ge=1, le=500)] = 50,
    ) -> dict:
        """List an account's transactions, newest first; negative amounts are money out."""
        st = store.get(ctx)
        a = account(st, account_id)
        d0 = parse_date(date_from, "date_from").isoformat() if date_from else "0000"
        d1 = parse_date(date_to, "date_to").isoformat() if date_to else "9999"
        if category and category.lower() not in CATEGORIES:
            raise EnvError(f"unknown category '{category}'; categories: {', '.join(CATEGORIES)}")
        txs = [
            t
            for t in st.transactions
            if t["account_id"] == a["id"]
            and d0 <= t["date"] <= d1
            and (not category or t["category"] == category.lower())
        ]
        txs = sorted(txs, key=lambda t: (t["date"], t["id"]), reverse=True)
        return {"account_id": a["id"], "total": len(txs), "transactions": txs[:limit]}

    @srv.tool()
    async def search(
        ctx: Context,
        query: Annotated[str, arg("Text to match in the description, e.g. 'FreshMart'; empty matches all.")] = "",
        min_amount: Annotated[float | None, arg("Minimum absolute amount in USD.", ge=0)] = None,
        max_amount: Annotated[float | None, arg("Maximum absolute amount in USD.", ge=0)] = None,
        limit: Annotated[int, arg("Maximum results.", ge=1, le=500)] = 50,
    ) -> dict:
        """Search transactions across all accounts by description and amount range."""
        st = store.get(ctx)
        q = query.strip().lower()
        hits = [
            t
            for t in st.transactions
            if q in t["description"].lower()
            and (min_amount is None or abs(t["amount"]) >= min_amount)
            and (max_amount is None or abs(t["amount"]) <= max_amount)
        ]
        hits = sorted(hits, key=lambda t: (t["date"], t["id"]), reverse=True)
        return {"total": len(hits), "transactions": hits[:limit], "sum": money(sum(t["amount"] for t in hits))}

    @srv.tool()
    async def transfer(
        from_account: AccountArg,
        to_account: AccountArg,
        amount: Amount,
        ctx: Context,
        memo: Annotated[str, arg("Optional note shown on both transactions.")] = "",
    ) -> dict:
        """Move money between your own accounts (paying the credit card from checking is a transfer too)."""
        st = store.get(ctx)
        src, dst = account(st, from_account), account(st, to_account)
        if src["id"] == dst["id"]:
            raise EnvError("from_account and to_account are the same")
        amount = money(amount)
        debit(st, src, amount)
        note = f" ({memo})" if memo else ""
        out = st.post(src["id"], -amount, f"Transfer to {dst['name']}{note}", "transfer")
        inn = st.post(dst["id"], amount, f"Transfer from {src['name']}{note}", "transfer")
        return {
            "amount": amount,
            "from": {"account_id": src["id"], "balance": src["balance"], "transaction_id": out["id"]},
            "to": {"account_id": dst["id"], "balance": dst["balance"], "transaction_id": inn["id"]},
        }

    @srv.tool()
    async def list_payees(ctx: Context) -> dict:
        """List saved bill payees (id, name, category, account number with the payee)."""
        return {"payees": list(store.get(ctx).payees.values())}

    @srv.tool()
    async def add_payee(
        name: Annotated[str, arg("Payee's name, e.g. 'Gym Membership Co'.", min_length=2, max_length=80)],
        account_number: Annotated[str, arg("Your customer/account number at the payee.", min_length=3, max_length=40)],
        ctx: Context,
        category: Annotated[str, arg("Spending category for these payments, e.g. 'utilities', 'bills'.")] = "bills",
    ) -> dict:
        """Save a new payee for bill payments."""
        st = store.get(ctx)
        if category.lower() not in CATEGORIES:
            raise EnvError(f"unknown category '{category}'; categories: {', '.join(CATEGORIES)}")
        if any(p["name"].lower() == name.strip().lower() for p in st.payees.values()):
            raise EnvError(f"a payee named '{name}' already exists; see list_payees")
        pid = f"P{st.next_payee}"
        st.next_payee += 1
        st.payees[pid] = {
            "id": pid,
            "name": name.strip(),
            "category": category.lower(),
            "account_number": account_number.strip(),
        }
        return {"created": st.payees[pid]}

    @srv.tool()
    async def pay_bill(
        payee_id: Annotated[str, arg("Payee id from list_payees, e.g. 'P1'.")],
        amount: Amount,
        ctx: Context,
        from_account: AccountArg = "ACC-1001",
        date: Annotated[str | None, arg("Payment date YYYY-MM-DD; a future date schedules it, default today.")] = None,
    ) -> dict:
        """Pay a bill to a saved payee now, or schedule it for a future date."""
        st = store.get(ctx)
        p = lookup(st.payees, payee_id.strip().upper(), "payee id")
        a = account(st, from_account)
        if a["type"] == "savings":
            raise EnvError("bills cannot be paid from savings; use ACC-1001 (checking) or ACC-1003 (credit card)")
        day = parse_date(date, "date") if date else TODAY
        if day < TODAY:
            raise EnvError(f"payment date {day} is in the past; today is {TODAY}")
        amount = money(amount)
        if day > TODAY:
            sid = f"S{st.next_sched}"
            st.next_sched += 1
            st.scheduled[sid] = {
                "id": sid,
                "payee_id": p["id"],
                "payee": p["name"],
                "amount": amount,
                "from_account": a["id"],
                "date": day.isoformat(),
                "status": "scheduled",
            }
            return {"scheduled": st.scheduled[sid]}
        debit(st, a, amount)
        tx = st.post(a["id"], -amount, f"Bill payment - {p['name']}", p["category"])
        return {"paid": tx, "balance": a["balance"]}

    @srv.tool()
    async def list_scheduled_payments(ctx: Context) -> dict:
        """List future-dated bill payments and their status."""
        return {"scheduled": sorted(store.get(ctx).scheduled.values(), key=lambda s: (s["date"], s["id"]))}

    @srv.tool()
    async def cancel_scheduled_payment(
        payment_id: Annotated[str, arg("Scheduled payment id, e.g. 'S1' (from list_scheduled_payments).")],
        ctx: Context,
    ) -> dict:
        """Cancel a scheduled (future) bill payment."""
        s = lookup(store.get(ctx).scheduled, payment_id.strip().upper(), "scheduled payment id")
        if s["status"] != "scheduled":
            raise EnvError(f"{s['id']} is already {s['status']}")
        s["status"] = "cancelled"
        return {"id": s["id"], "status": "cancelled"}

    @srv.tool()
    async def get_spending_summary(
        ctx: Context,
        month: Annotated[str, arg("Month as YYYY-MM, e.g. '2026-02'.", pattern=r"^\d{4}-\d{2}$")] = "2026-02",
        account_id: Annotated[str | None, arg("Only this account; default all accounts.")] = None,
    ) -> dict:
        """Money out per category in a month (transfers excluded), largest first, plus total income."""
        st = store.get(ctx)
        acct = account(st, account_id)["id"] if account_id else None
        txs = [
            t
            for t in st.transactions
            if t["date"].startswith(month)
            and (acct is None or t["account_id"] == acct)
            and t["category"] != "transfer"
            and t["description"] != "Opening balance"
        ]
        spend: dict[str, float] = {}
        for t in txs:
            if t["amount"] < 0:
                spend[t["category"]] = money(spend.get(t["category"], 0) - t["amount"])
        rows = [{"category": c, "spent": v} for c, v in sorted(spend.items(), key=lambda cv: (-cv[1], cv[0]))]
        return {
            "month": month,
            "account_id": acct or "all",
            "by_category": rows,
            "total_spent": money(sum(spend.values())),
            "total_income": money(sum(t["amount"] for t in txs if t["amount"] > 0)),
        }

    @srv.tool()
    async def convert(
        amount: Annotated[float, arg("Amount to convert.", gt=0)],
        from_currency: Annotated[str, arg(f"Currency code: {', '.join(FX)}.")],
        to_currency: Annotated[str, arg(f"Currency code: {', '.join(FX)}.")],
    ) -> dict:
        """Quote a currency exchange at the bank's rate, including its 1% fee (nothing is booked)."""
        f = lookup(FX, from_currency.strip().upper(), "currency")
        t = lookup(FX, to_currency.strip().upper(), "currency")
        gross = amount / f * t
        return {
            "amount": amount,
            "from_currency": from_currency.upper(),
            "to_currency": to_currency.upper(),
            "rate": round(t / f, 6),
            "fee": round(gross * FX_FEE, 2),
            "you_receive": round(gross * (1 - FX_FEE), 2),
        }

    @srv.tool()
    async def list_cards(ctx: Context) -> dict:
        """List debit and credit cards with linked account and frozen status."""
        return {"cards": list(store.get(ctx).cards.values())}

    @srv.tool()
    async def freeze_card(
        card_id: Annotated[str, arg("Card id, 'CARD-1' (debit) or 'CARD-2' (credit).")],
        ctx: Context,
        frozen: Annotated[bool, arg("True freezes the card (blocks purchases); False unfreezes it.")] = True,
    ) -> dict:
        """Freeze or unfreeze a card, e.g. when it is lost."""
        c = lookup(store.get(ctx).cards, card_id.strip().upper(), "card id")
        c["frozen"] = frozen
        return dict(c)

    return srv


if __name__ == "__main__":
    main(build)

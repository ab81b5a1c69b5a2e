"""Spend accounting and budgets: what embedding cost, per job, and when a job must stop.

Tokens are the provider's own count (its ``usage``) when it reports one, else
counted with the model's tokenizer and marked as estimated; cost is tokens times
the price (:func:`pricing`: embedops.toml, else a dated list price of a well-known
hosted model, :data:`LIST_PRICES`). Every job (sync, backfill, eval, query embedding,
fingerprint check) writes :func:`record` rows in the transaction of the ledger
row of what it committed, so the catalog's spend is exactly what committed work
cost. A :class:`Guard` stops a job once its spend reaches its cap; the decision
whether to start at all (:func:`check_start`) is pure.

>>> Spend(tokens=2_000_000, cost=cost_of(2_000_000, 0.02)).cost
0.04
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.errors import BudgetExceeded, ConfigError, EmbeddingError

if TYPE_CHECKING:
    import numpy as np

    from embedops.embedding.base import Embedder, TokenSource
    from embedops.embedding.providers import EmbedderConfig

log = logging.getLogger(__name__)
GroupBy = Literal["space", "job", "day", "source", "kind"]
GROUPS: tuple[GroupBy, ...] = ("space", "job", "day", "source", "kind")


@dataclass
class Spend:
    """What embedding one piece of work cost in one space, and what the content-hash cache saved."""

    requests: int = 0
    tokens: int = 0
    estimated_tokens: int = 0  # the part of ``tokens`` no provider reported (counted here)
    cost: float = 0.0
    cache_hits: int = 0
    cache_saved_tokens: int = 0
    cache_saved_cost: float = 0.0

    def add(self, other: Spend) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost"], out["cache_saved_cost"] = round(self.cost, 8), round(self.cache_saved_cost, 8)
        return out


def cost_of(tokens: int, price_per_million: float | None) -> float:
    """USD for ``tokens`` at ``price_per_million`` (None: unpriced, costs 0)."""
    return 0.0 if not price_per_million else tokens * price_per_million / 1_000_000


#: When :data:`LIST_PRICES` was checked against the providers' price pages: the table's date, not a live figure.
LIST_PRICES_CHECKED = "2025-06"
#: The ``price_source`` of a price taken from :data:`LIST_PRICES`.
LIST_PRICE_SOURCE = f"default list price ({LIST_PRICES_CHECKED})"
#: List prices, USD per million input tokens, of well-known hosted embedding models, as listed by the providers
#: when checked (:data:`LIST_PRICES_CHECKED`). Keyed by the API's host and the model: a self-hosted server (vLLM,
#: TEI, infinity, a proxy) serving a model of the same name is not charged by them. Not here: discounts, free tiers,
#: batch rates, regional or Azure prices; ``price_per_million_tokens`` or ``[budget.prices]`` overrides an entry.
LIST_PRICES: dict[tuple[str, str], float] = {
    ("api.openai.com", "text-embedding-3-small"): 0.02,
    ("api.openai.com", "text-embedding-3-large"): 0.13,
    ("api.openai.com", "text-embedding-ada-002"): 0.10,
    ("api.voyageai.com", "voyage-3"): 0.06,
    ("api.voyageai.com", "voyage-3-lite"): 0.02,
    ("api.voyageai.com", "voyage-3-large"): 0.18,
    ("api.mistral.ai", "mistral-embed"): 0.10,
}


@dataclass(frozen=True)
class Price:
    """What an embedder costs, USD per million tokens (None: unknown), and where that figure comes from.

    >>> Price(0.02, LIST_PRICE_SOURCE).to_dict()
    {'price_per_million_tokens': 0.02, 'price_source': 'default list price (2025-06)'}
    """

    per_million: float | None
    source: str  # "embedops.toml [embedders.NAME]", "embedops.toml [budget.prices]", LIST_PRICE_SOURCE, ...

    def to_dict(self) -> dict[str, Any]:
        return {"price_per_million_tokens": self.per_million, "price_source": self.source}


def pricing(name: str, embedders: Mapping[str, EmbedderConfig], prices: Mapping[str, float]) -> Price:
    """The price of embedder ``name``: its ``[embedders.NAME] price_per_million_tokens``, else ``[budget.prices]``,
    else the list price of its host and model (:data:`LIST_PRICES`); an in-process model without either costs 0,
    an HTTP one without any is unknown (None).

    >>> from embedops.embedding.providers import parse_embedder_config
    >>> oai = parse_embedder_config("oai", {"kind": "openai", "model": "text-embedding-3-small"})
    >>> pricing("oai", {"oai": oai}, {}).source
    'default list price (2025-06)'
    """
    section = embedders.get(name)
    if section is not None and section.price_per_million_tokens is not None:
        return Price(float(section.price_per_million_tokens), f"embedops.toml [embedders.{name}]")
    if name in prices:
        return Price(float(prices[name]), "embedops.toml [budget.prices]")
    if section is None:
        return Price(0.0, "in-process model")
    listed = LIST_PRICES.get((section.host, section.model))
    return Price(None, "unknown") if listed is None else Price(listed, LIST_PRICE_SOURCE)


def price_of(name: str, embedders: Mapping[str, EmbedderConfig], prices: Mapping[str, float]) -> float | None:
    """USD per million tokens of embedder ``name`` (:func:`pricing`'s figure)."""
    return pricing(name, embedders, prices).per_million


def count_tokens(tokens: TokenSource, texts: Iterable[str]) -> int:
    """The tokens of ``texts``: one batch encode where the token source has one (Rust threads), else text by text."""
    listed = list(texts)
    many = getattr(tokens, "count_tokens_many", None)
    if many is not None and len(listed) > 1:
        return sum(many(listed))
    return sum(tokens.count_tokens(t) for t in listed)


def cache_saving(tokens: TokenSource, texts: Iterable[str], price: float | None) -> Spend:
    """The spend the cache saved: texts whose vector was already stored in the space, never sent again."""
    listed = list(texts)
    n = count_tokens(tokens, listed) if listed else 0
    return Spend(cache_hits=len(listed), cache_saved_tokens=n, cache_saved_cost=cost_of(n, price))


def usage_spend(usage: Any, price: float | None) -> Spend:
    """An HTTP embedder's ``Usage`` as spend: its reported tokens plus those it had to estimate."""
    tokens = int(usage.tokens) + int(usage.estimated_tokens)
    return Spend(requests=int(usage.requests), tokens=tokens, estimated_tokens=int(usage.estimated_tokens),
                 cost=cost_of(tokens, price))


def embed_metered(embedder: Embedder, texts: Sequence[str], price: float | None, into: Spend, *,
                  query: bool = False) -> np.ndarray:
    """``embedder.embed(texts)`` (``query``: ``embed_queries``, the query side of an asymmetric model), adding what
    it cost to ``into`` (also when it raises: a refused or failed call was billed for what the provider did).
    In-process models make no request; their tokens are counted."""
    with_usage = getattr(embedder, "embed_with_usage", None)
    if with_usage is None:
        vectors = embedder.embed_queries(texts) if query else embedder.embed(texts)
        n = count_tokens(embedder, texts)
        into.add(Spend(tokens=n, estimated_tokens=n, cost=cost_of(n, price)))
        return vectors
    try:
        vectors, usage = with_usage(texts, query=True) if query else with_usage(texts)
    except EmbeddingError as exc:
        if exc.usage is not None:
            into.add(usage_spend(exc.usage, price))
        raise
    into.add(usage_spend(usage, price))
    return vectors  # type: ignore[no-any-return]


# -- jobs and the catalog ------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One job's identity in the spend table: every row it writes carries ``id``."""

    kind: str
    id: str

    @classmethod
    def new(cls, kind: str) -> Job:
        return cls(kind, f"{kind}-{uuid.uuid4().hex[:12]}")


@dataclass(frozen=True)
class Line:
    """One space's share of what a committed piece of work cost."""

    space_key: str
    embedder: str
    spend: Spend
    source: str | None = None


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def record(conn: sa.Connection, ledger_id: int, job: Job, lines: Iterable[Line]) -> int:
    """Write ``lines`` (skipping empty ones) with the ledger row ``ledger_id``, in the caller's transaction."""
    now = time.time()
    rows = [{"ledger_id": ledger_id, "job": job.id, "kind": job.kind, "at": now, "day": utc_day(now),
             "space_key": line.space_key, "embedder": line.embedder, "source": line.source, **line.spend.to_dict()}
            for line in lines if not line.spend.empty]
    if rows:
        conn.execute(sa.insert(schema.spend), rows)
    return len(rows)


def job_totals(engine: sa.Engine, job: str) -> dict[str, Any]:
    """What job ``job`` spent so far (the sums of its spend rows, as a row of ``embedops spend``)."""
    with read_tx(engine) as conn:
        return report(conn, since=None, by="job", job=job)[1]


def check_recorder(engine: sa.Engine, index_id: str, space_key: str, embedder: str) -> Callable[[Spend], None]:
    """A callback recording what a sentinel check of an index's model cost: a ``model.verify`` ledger row and its
    spend row. It also runs on the query path (a process's first query): a catalog refusing the write is logged."""
    def record_check(spend: Spend) -> None:
        # An in-process model's check makes no request and costs nothing: no row (a plan, a first search
        # in a process, must not write to the ledger for it).
        if spend.empty or (not spend.requests and not spend.cost):
            return
        try:
            with engine.begin() as conn:
                ledger_id = write_ledger(conn, "model.verify", index=index_id, space=space_key)
                record(conn, ledger_id, Job.new("fingerprint"), [Line(space_key, embedder, spend)])
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not record the cost of the model check of index %s: %s", index_id, exc)

    return record_check


def month_start(now: float) -> str:
    """The first UTC day of ``now``'s month: monthly budgets reset there."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-01")


def spent_since_day(conn: sa.Connection, day: str) -> float:
    s = schema.spend
    return float(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(s.c.cost), 0.0)).where(s.c.day >= day)).scalar_one())


# -- budgets ------------------------------------------------------------------------------------
def limits_for(engine: sa.Engine, monthly_usd: float | None, max_cost: float | None = None) -> Limits:
    """A job's limits: ``max_cost`` and what ``monthly_usd`` has left this (UTC) month."""
    if max_cost is not None and not max_cost >= 0:
        raise ConfigError(f"--max-cost must be a number of USD >= 0 (got {max_cost})", hint="e.g. --max-cost 5")
    spent = 0.0
    if monthly_usd is not None:
        with read_tx(engine) as conn:
            spent = spent_since_day(conn, month_start(time.time()))
    return Limits(max_cost, monthly_usd, spent)


@dataclass(frozen=True)
class Limits:
    """A job's limits: its own ``--max-cost``, and what the workspace's monthly budget has left."""

    max_cost: float | None = None
    monthly_usd: float | None = None
    month_spent: float = 0.0

    @property
    def month_left(self) -> float | None:
        return None if self.monthly_usd is None else max(0.0, self.monthly_usd - self.month_spent)

    @property
    def cap(self) -> float | None:
        """What this job may spend at most (None: unlimited)."""
        caps = [c for c in (self.max_cost, self.month_left) if c is not None]
        return min(caps) if caps else None

    def to_dict(self) -> dict[str, Any]:
        return {"max_cost": self.max_cost, "monthly_usd": self.monthly_usd, "month_spent": round(self.month_spent, 8),
                "month_left": None if self.month_left is None else round(self.month_left, 8), "cap": self.cap}


def check_prices(limits: Limits, prices: Mapping[str, float | None], command: str) -> None:
    """A cap cannot be kept for an embedder whose price is unknown: refuse, naming the setting."""
    unpriced = sorted(name for name, price in prices.items() if price is None)
    if limits.cap is not None and unpriced:
        raise ConfigError(
            f"{command}: embedder(s) {', '.join(unpriced)} have no price, so a budget cannot be kept",
            hint=f"set price_per_million_tokens in [embedders.{unpriced[0]}] of embedops.toml",
        )


def check_start(limits: Limits, estimate: float, command: str) -> None:
    """Refuse a job the monthly budget cannot pay for; a ``--max-cost`` within what is left lets it run that far.

    >>> check_start(Limits(max_cost=1.0), 5.0, "sync")  # a run cap: the job runs and stops at it
    >>> check_start(Limits(monthly_usd=10.0, month_spent=8.0, max_cost=2.0), 5.0, "sync")  # within what is left
    """
    left = limits.month_left
    if left is None:
        return
    within = limits.max_cost is not None and limits.max_cost <= left
    if left <= 0 or (estimate > left and not within):
        raise BudgetExceeded(
            f"{command} would cost about ${estimate:.6g} but the monthly budget has ${left:.6g} left"
            f" (${limits.month_spent:.6g} of [budget] monthly_usd = ${limits.monthly_usd:.6g} spent this month)",
            hint=("raise [budget] monthly_usd in embedops.toml" if left <= 0 else
                  f"raise [budget] monthly_usd in embedops.toml, or spend what is left with `{command} --max-cost"
                  f" {left:.6g}` (it stops there and resumes later)"),
            estimate=round(estimate, 8), **limits.to_dict())


def check_whole(limits: Limits, estimate: float, command: str) -> None:
    """For a job that cannot stop half-way (an eval run's queries): refuse it when its estimate exceeds the cap."""
    check_start(limits, estimate, command)
    if limits.cap is not None and estimate > limits.cap:
        raise BudgetExceeded(
            f"{command} would cost about ${estimate:.6g}, more than its cap of ${limits.cap:.6g}; nothing was embedded",
            hint="raise --max-cost (queries embedded once are kept in the catalog: a re-run does not pay for them"
                 " again)", estimate=round(estimate, 8), **limits.to_dict())


class Guard:
    """Stops a running job once its spend reaches the cap: checked before each batch starts, so a job
    spends at most the cap plus one batch (the one started just under it)."""

    def __init__(self, limits: Limits, command: str) -> None:
        self.limits = limits
        self.command = command
        self.spent = 0.0
        self._in_flight: dict[int, float] = {}  # batches started and not yet paid → their estimated cost

    @property
    def cap(self) -> float | None:
        return self.limits.cap

    def add(self, cost: float) -> None:
        self.spent += cost

    def admit(self, batch: int, estimate: float) -> bool:
        """Whether batch ``batch`` (any key unique while it runs) may start: a batch that costs nothing always
        may; another only while the spend plus the estimates of the batches in flight is under the cap."""
        if estimate > 0 and self.reached(sum(self._in_flight.values())):
            return False
        self._in_flight[batch] = estimate
        return True

    def paid(self, batch: int, cost: float) -> None:
        """Batch ``batch`` is committed at ``cost``: its estimate leaves the in-flight sum, its cost the spend."""
        self._in_flight.pop(batch, None)
        self.add(cost)

    def reached(self, in_flight: float = 0.0) -> bool:
        """Whether the spend (``in_flight``: the estimate of work started but not yet paid) reached the cap."""
        return self.cap is not None and self.spent + in_flight >= self.cap

    def stopped(self, what: str, **details: Any) -> BudgetExceeded:
        which = "--max-cost" if self.limits.max_cost is not None and self.cap == self.limits.max_cost \
            else "[budget] monthly_usd"
        return BudgetExceeded(
            f"{self.command} stopped at its cap of ${self.cap:.6g} ({which}): it spent ${self.spent:.6g}, and its next"
            f" batch would have started at or over the cap; {what}",
            hint=f"everything embedded so far is committed; raise {which} and run `{self.command}` again: it"
                 " resumes where it stopped (`embedops spend` shows what was spent)",
            spent=round(self.spent, 8), reason="budget", **self.limits.to_dict(), **details)


# -- the report -----------------------------------------------------------------------------------
_SUMS = ("requests", "tokens", "estimated_tokens", "cost", "cache_hits", "cache_saved_tokens", "cache_saved_cost")


@dataclass
class SpendReport:
    """``embedops spend``: totals and one row per group, over the rows since ``since``."""

    since: float | None
    by: GroupBy
    rows: list[dict[str, Any]]
    total: dict[str, Any]
    monthly_usd: float | None = None
    month_spent: float = 0.0
    # The price now in effect of each embedder in the rows, and its source (a row's cost was fixed when recorded).
    prices: dict[str, Price] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        since = None if self.since is None else datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
        return {"since": since, "by": self.by, "rows": self.rows, "total": self.total,
                "prices": {name: price.to_dict() for name, price in self.prices.items()},
                "budget": {"monthly_usd": self.monthly_usd, "month_spent": round(self.month_spent, 8),
                           "month_left": None if self.monthly_usd is None
                           else round(max(0.0, self.monthly_usd - self.month_spent), 8)}}


def group_by(by: str) -> GroupBy:
    """``by`` checked: one of :data:`GROUPS`."""
    for group in GROUPS:
        if by == group:
            return group
    raise ConfigError(f"--by must be one of {', '.join(GROUPS)} (got {by!r})", hint="e.g. --by job")


def _group_columns(by: GroupBy) -> list[sa.ColumnElement[Any]]:
    s = schema.spend
    columns: dict[str, list[sa.ColumnElement[Any]]] = {
        "space": [s.c.space_key, s.c.embedder],
        "job": [s.c.job, s.c.kind],
        "day": [s.c.day],
        "source": [sa.func.coalesce(s.c.source, "").label("source")],
        "kind": [s.c.kind],
    }
    return columns[by]


def report(conn: sa.Connection, *, since: float | None, by: GroupBy,
           job: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows grouped ``by`` (biggest cost first; jobs and days in time order) and the totals; ``job``: one job's."""
    s = schema.spend
    sums = [sa.func.coalesce(sa.func.sum(getattr(s.c, n)), 0).label(n) for n in _SUMS]
    extra = [sa.func.count().label("rows"), sa.func.min(s.c.at).label("first_at"), sa.func.max(s.c.at).label("last_at")]
    where = ([s.c.at >= since] if since is not None else []) + ([s.c.job == job] if job is not None else [])
    groups = _group_columns(by)
    q = sa.select(*groups, *sums, *extra).where(*where).group_by(*groups)
    rows = [_clean(dict(r._mapping)) for r in conn.execute(q)]
    ordered = sorted(rows, key=lambda r: r["first_at"]) if by in ("job", "day") else \
        sorted(rows, key=lambda r: (-r["cost"], -r["tokens"]))
    total = _clean(dict(conn.execute(sa.select(*sums, *extra).where(*where)).one()._mapping))
    return ordered, total


def embedders_in(conn: sa.Connection, *, since: float | None) -> list[str]:
    """Names of the embedders that spend rows since ``since`` were recorded for."""
    s = schema.spend
    q = sa.select(s.c.embedder).distinct().where(*([s.c.at >= since] if since is not None else [])).order_by(s.c.embedder)
    return list(conn.execute(q).scalars())


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    for name in _SUMS:
        row[name] = round(float(row[name]), 8) if name.endswith("cost") else int(row[name] or 0)
    if "source" in row:
        row["source"] = row["source"] or None
    return row

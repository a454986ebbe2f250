"""What the developer portal lists: published APIs and the published products that bundle them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.db.models import Api, Product
from tollway.errors import NotFound


@dataclass(frozen=True)
class CatalogueEntry:
    """One published API with the published products that include it."""

    api: Api
    products: list[Product]


def published_products(session: Session) -> list[Product]:
    return list(session.scalars(select(Product).where(Product.published).order_by(Product.name)))


def catalogue(session: Session) -> list[CatalogueEntry]:
    """Every published API, by name, with the products (published) that include it."""
    products = published_products(session)
    apis = session.scalars(select(Api).where(Api.published).order_by(Api.name))
    return [
        CatalogueEntry(api, [p for p in products if any(a.id == api.id for a in p.apis)])
        for api in apis
    ]


def published_product(session: Session, name: str) -> Product:
    """A product developers may subscribe to."""
    product = session.scalar(select(Product).where(Product.name == name, Product.published))
    if product is None:
        raise NotFound(f"no product named {name!r}")
    return product
